"""What one chat-model call reports: the model asked for, usage, cost, and its metrics.

Reads LangChain's callback payloads (`invocation_params`, `LLMResult`), whatever the
provider; knows nothing of the workflow that made the call.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.outputs import ChatGeneration, LLMResult

from core.budget.prices import known_cost_usd as cost_usd
from core.observability import metrics as m


@dataclass(frozen=True, slots=True)
class LlmUsage:
    """Tokens and response details of one finished model call."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    response_model: str | None = None
    """The model the provider says answered (may differ from the one requested)."""
    finish_reason: str | None = None
    tool_calls: tuple[str, ...] = ()
    """Names of the tools the model asked for."""


def requested_model(invocation_params: Mapping[str, Any], metadata: Mapping[str, Any]) -> str:
    """The model a call asked for, from its invocation parameters or LangChain's metadata."""
    return str(
        invocation_params.get("model")
        or invocation_params.get("model_name")
        or metadata.get("ls_model_name")
        or "unknown"
    )


def usage_of(response: LLMResult) -> LlmUsage:
    """Read tokens, the responding model and the finish reason from a model's result.

    Prefers the message's `usage_metadata`; falls back on `llm_output["token_usage"]`
    (OpenAI-style `prompt_tokens` / `completion_tokens`).
    """
    usage: Mapping[str, Any] = {}
    response_model: str | None = None
    finish_reason: str | None = None
    tool_calls: list[str] = []
    generation = (
        response.generations[0][0] if response.generations and response.generations[0] else None
    )
    if isinstance(generation, ChatGeneration):
        message = generation.message
        usage = cast(Mapping[str, Any], getattr(message, "usage_metadata", None) or {})
        meta = message.response_metadata or {}
        response_model = meta.get("model_name") or meta.get("model")
        finish_reason = meta.get("finish_reason")
        tool_calls = [str(tc.get("name")) for tc in getattr(message, "tool_calls", [])]
    llm_output = response.llm_output or {}
    if not usage and isinstance(llm_output.get("token_usage"), Mapping):
        raw = llm_output["token_usage"]
        usage = {
            "input_tokens": raw.get("prompt_tokens", 0),
            "output_tokens": raw.get("completion_tokens", 0),
        }
    details = usage.get("input_token_details") or {}
    return LlmUsage(
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        cached_input_tokens=(
            int(details.get("cache_read") or 0) if isinstance(details, Mapping) else 0
        ),
        response_model=response_model or llm_output.get("model_name"),
        finish_reason=finish_reason,
        tool_calls=tuple(tool_calls),
    )


def call_cost(usage: LlmUsage, requested: str) -> float | None:
    """The call's cost in USD, priced by the responding model, else the requested one.

    Returns:
        The cost, or None when neither model has a price.
    """
    for candidate in (usage.response_model, requested):
        if candidate:
            cost = cost_usd(
                candidate,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_input_tokens=usage.cached_input_tokens,
            )
            if cost is not None:
                return cost
    return None


def record_llm_call(model: str, seconds: float, usage: LlmUsage, cost: float | None) -> None:
    """Count a finished call: calls, latency, tokens and cost (or unpriced) by model."""
    m.LLM_CALLS.labels(model=model, status="ok").inc()
    m.LLM_SECONDS.labels(model=model).observe(seconds)
    m.LLM_TOKENS.labels(model=model, kind="input").inc(usage.input_tokens)
    m.LLM_TOKENS.labels(model=model, kind="output").inc(usage.output_tokens)
    if usage.cached_input_tokens:
        m.LLM_TOKENS.labels(model=model, kind="cached_input").inc(usage.cached_input_tokens)
    if cost is None:
        m.LLM_UNPRICED_CALLS.labels(model=model).inc()
    else:
        m.LLM_COST_USD.labels(model=model).inc(cost)


def record_llm_error(model: str, seconds: float, error: BaseException) -> None:
    """Count a failed call by model and exception type, with its latency."""
    m.LLM_CALLS.labels(model=model, status="error").inc()
    m.LLM_ERRORS.labels(model=model, error_type=type(error).__name__).inc()
    m.LLM_SECONDS.labels(model=model).observe(seconds)


def usage_span_attributes(usage: LlmUsage, cost: float | None) -> dict[str, Any]:
    """The GenAI attributes of a finished call's span (tokens, response model, cost)."""
    attributes: dict[str, Any] = {
        "gen_ai.usage.input_tokens": usage.input_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
    }
    if usage.response_model:
        attributes["gen_ai.response.model"] = usage.response_model
    if usage.finish_reason:
        attributes["gen_ai.response.finish_reasons"] = [usage.finish_reason]
    if cost is not None:
        attributes["steward.cost_usd"] = cost
    return attributes


__all__ = [
    "LlmUsage",
    "call_cost",
    "record_llm_call",
    "record_llm_error",
    "requested_model",
    "usage_of",
    "usage_span_attributes",
]
