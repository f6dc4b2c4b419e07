"""agent: call the chat model with the caller's permitted tools, within budget.

Before every call: pick the model (routine or strong, core.budget.routing), bind only the
tools the assistant and the caller's role may use, estimate the call with tiktoken (prompt as
counted by OpenAI + output at its `max_tokens` cap) and reserve that estimate in the usage
ledger; a refused reservation stops the turn with `stop_reason="budget_exceeded"` (validate
answers with that refusal code). After the call the reservation is settled with the
provider's reported usage (`AIMessage.usage_metadata`), or released when the call failed.
"""

from __future__ import annotations

import asyncio
import logging
from decimal import Decimal
from typing import Any

import openai
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import BaseMessage, SystemMessage
from langchain_core.runnables import Runnable, RunnableConfig
from langgraph.runtime import Runtime, get_runtime

from core.budget.budgets import ANONYMOUS_USER, BUDGET_EXCEEDED, DEFAULT_TENANT, Payer
from core.budget.estimates import (
    CallEstimate,
    encoding_for,
    estimate_call,
    output_tokens_of,
)
from core.budget.prices import cost_usd
from core.budget.routing import escalation
from core.errors import ProviderError
from core.knowledge.types import RetrievedChunk
from graph.context import RunContext, context_of, run_id_of, thread_id_of
from graph.deps import Deps, model_name_of
from graph.prompts import CONTEXT_CHUNK, NO_CONTEXT, SYSTEM_PROMPT
from graph.retry import llm_retry_policy, parse_retry_after, retry_after_wait
from graph.state import State
from graph.tools import TOOLS
from nodes.types import ConfigContextNode

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def system_prompt(chunks: list[RetrievedChunk], deps: Deps) -> SystemMessage:
    """Render the system prompt with this turn's citable policy excerpts."""
    seen: set[str] = set()
    lines: list[str] = []
    for chunk in chunks:
        if chunk["id"] in seen:
            continue
        seen.add(chunk["id"])
        text = " ".join(chunk["text"].split())
        lines.append(CONTEXT_CHUNK.format(id=chunk["id"], title=chunk["title"], text=text))
    return SystemMessage(
        SYSTEM_PROMPT.format(
            threshold=deps.approval_threshold,
            currency="USD",
            contact=deps.settings.support_contact,
            context="\n".join(lines) or NO_CONTEXT,
        )
    )


def as_provider_error(exc: openai.APIError) -> ProviderError:
    """Translate an OpenAI client error into our error with a retry verdict."""
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("LLM provider timed out", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError("LLM provider unreachable", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return ProviderError(
            f"LLM provider answered HTTP {status}",
            retryable=status in RETRYABLE_STATUS,
            status=status,
            retry_after=parse_retry_after(exc.response.headers),
        )
    return ProviderError(f"LLM provider error: {type(exc).__name__}", retryable=False)


def current_attempt() -> int:
    """This node execution's attempt number (1 on the first), from LangGraph's runtime."""
    try:
        info = get_runtime().execution_info
    except (RuntimeError, AttributeError, KeyError):
        return 1
    return int(info.node_attempt) if info is not None else 1


def payer_of(
    context: RunContext,
    runtime: Runtime[RunContext] | None,
    config: RunnableConfig,
    *,
    fallback_run_id: str | None,
) -> Payer:
    """Who the call is charged to: the run's tenant and user, its thread and its run id.

    Identity comes from the run's context only; the run id is `graph.context.run_id_of`, else
    `fallback_run_id` (the turn id).
    """
    return Payer(
        tenant_id=context.tenant_id or DEFAULT_TENANT,
        user_id=context.user_id or ANONYMOUS_USER,
        thread_id=thread_id_of(runtime),
        run_id=run_id_of(runtime, config) or fallback_run_id,
    )


def actual_usage(
    reply: BaseMessage, estimate: CallEstimate, encoding: Any
) -> tuple[int, int, int, bool]:
    """(input, output, cached input, reported by the provider) for a reply."""
    usage = getattr(reply, "usage_metadata", None)
    if usage:
        details = usage.get("input_token_details") or {}
        return (
            int(usage.get("input_tokens", 0)),
            int(usage.get("output_tokens", 0)),
            int(details.get("cache_read", 0) or 0),
            True,
        )
    return estimate.input_tokens, output_tokens_of(reply, encoding), 0, False


def make_agent(deps: Deps) -> ConfigContextNode:
    """Build the model-calling node."""
    settings = deps.settings
    models: dict[str, BaseChatModel] = {
        "strong": deps.chat_model,
        "routine": deps.routine_chat_model or deps.chat_model,
    }
    retry_policy = llm_retry_policy(settings.llm_max_attempts)  # the one graph.builder sets
    schemas: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    bound: dict[tuple[str, tuple[str, ...]], Runnable[LanguageModelInput, BaseMessage]] = {}

    def tool_schemas(names: tuple[str, ...]) -> list[dict[str, Any]]:
        if names not in schemas:
            schemas[names] = [TOOLS[name].openai_schema() for name in names]
        return schemas[names]

    def bind(route: str, names: tuple[str, ...]) -> Runnable[LanguageModelInput, BaseMessage]:
        if (route, names) not in bound:
            chat, offered = models[route], tool_schemas(names)
            bound[route, names] = chat.bind_tools(offered) if offered else chat
        return bound[route, names]

    async def honour_retry_after(error: ProviderError) -> None:
        """Wait what the provider's Retry-After asks beyond the policy's backoff (graph.retry)."""
        wait = retry_after_wait(
            retry_policy,
            failures=current_attempt(),
            retry_after=error.retry_after,
            cap_s=settings.llm_max_retry_after_s,
        )
        if wait > 0:
            log.warning(
                "LLM provider asked to retry after %.1fs (cap %.0fs): waiting %.1fs "
                "before the retry backoff",
                error.retry_after,
                settings.llm_max_retry_after_s,
                wait,
            )
            await asyncio.sleep(wait)

    async def agent(
        state: State, config: RunnableConfig, runtime: Runtime[RunContext] | None = None
    ) -> dict[str, Any]:
        """Ask the model for the next step: tool calls or a final JSON answer."""
        calls = state.get("model_calls", 0)
        if calls >= settings.max_model_calls:
            return {"stop_reason": "model_call_limit"}
        context = context_of(runtime)
        names = deps.tools_for(deps.role_of(context))
        route = state.get("route") or "strong"
        if route == "routine" and escalation(state.get("repairs", 0), state.get("actions", [])):
            route = "strong"
        model_name = model_name_of(models[route], settings)
        prompt: list[BaseMessage] = [
            system_prompt(state.get("retrieved", []), deps),
            *state["messages"],
        ]
        encoding = await encoding_for(model_name)
        estimate = estimate_call(
            model_name,
            prompt,
            tool_schemas(names),
            max_output_tokens=settings.llm_max_tokens,
            encoding=encoding,
            settings=settings,
        )
        ledger = deps.usage_ledger
        call_id: str | None = None
        if ledger is not None:
            payer = payer_of(context, runtime, config, fallback_run_id=state.get("turn_id"))
            reservation = await ledger.reserve(payer, estimate, route=route)
            if not reservation.granted:
                return {"stop_reason": BUDGET_EXCEEDED}
            call_id = reservation.call_id
        try:
            reply = await bind(route, names).ainvoke(prompt)
        except BaseException as exc:
            if ledger is not None and call_id is not None:
                await ledger.release(call_id)
            if isinstance(exc, openai.APIError):
                error = as_provider_error(exc)
                if error.retryable:
                    await honour_retry_after(error)
                raise error from exc
            raise
        used_in, used_out, cached, reported = actual_usage(reply, estimate, encoding)
        cost: Decimal = cost_usd(
            model_name,
            settings,
            input_tokens=used_in,
            output_tokens=used_out,
            cached_input_tokens=cached,
        )
        if ledger is not None and call_id is not None:
            await ledger.settle(
                call_id,
                input_tokens=used_in,
                output_tokens=used_out,
                cached_input_tokens=cached,
                cost_usd=cost,
                source="provider" if reported else "estimate",
            )
        log.info(
            "model call",
            extra={
                "model": model_name,
                "route": route,
                "route_reason": state.get("route_reason"),
                "estimated_input_tokens": estimate.input_tokens,
                "input_tokens": used_in,
                "output_tokens": used_out,
                "cost_usd": str(cost),
                "usage_reported": reported,
            },
        )
        return {"messages": [reply], "model_calls": calls + 1}

    return agent
