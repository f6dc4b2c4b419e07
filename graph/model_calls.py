"""The chat-model calls of a run: a `chat <model>` span, metrics and a log line per call.

`ModelCalls` keeps the calls in flight for `RunObserver` and adds each finished call's
tokens and cost to the run it belongs to.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any
from uuid import UUID

from langchain_core.outputs import LLMResult
from opentelemetry.trace import Span, Tracer

from core.observability.llm_calls import (
    call_cost,
    record_llm_call,
    record_llm_error,
    requested_model,
    usage_of,
    usage_span_attributes,
)
from core.observability.spans import mark_error, start_chat_span
from graph.run_records import LlmCall, RunCall

log = logging.getLogger("steward.run")


class ModelCalls:
    """The model calls in flight of one observer, keyed by LangChain run id."""

    def __init__(
        self,
        *,
        lock: threading.Lock,
        tracer: Tracer | None,
        extra: Callable[..., dict[str, Any]],
        span_attrs: Callable[[], dict[str, str]],
    ) -> None:
        """Create the table.

        Args:
            lock: the observer's lock, held while a run's totals change.
            tracer: for `chat` spans; None for no spans.
            extra: builds a log record's `extra` (the run's ids plus the given fields).
            span_attrs: the run's ids as span attributes.
        """
        self._lock = lock
        self._tracer = tracer
        self._extra = extra
        self._span_attrs = span_attrs
        self._calls: dict[UUID, LlmCall] = {}

    def start(
        self,
        run_id: UUID,
        *,
        run: RunCall | None,
        parent_span: Span | None,
        metadata: Mapping[str, Any],
        invocation_params: Mapping[str, Any],
    ) -> None:
        """Start timing (and a span under `parent_span` for) a call; the caller holds the lock."""
        model = requested_model(invocation_params, metadata)
        span = None
        if self._tracer is not None and parent_span is not None:
            span = start_chat_span(
                self._tracer,
                parent_span,
                model=model,
                provider=str(metadata.get("ls_provider") or "unknown"),
                attributes=self._span_attrs(),
            )
        self._calls[run_id] = LlmCall(model=model, run=run, started=time.perf_counter(), span=span)

    def pop(self, run_id: UUID) -> LlmCall | None:
        """Remove and return a call in flight; the caller holds the lock."""
        return self._calls.pop(run_id, None)

    def drop_run(self, run: RunCall) -> None:
        """Forget the calls of `run` that never ended (cancelled mid-call)."""
        for key in [key for key, call in self._calls.items() if call.run is run]:
            del self._calls[key]

    def finish(self, call: LlmCall, response: LLMResult) -> None:
        """Record latency, tokens and cost of a finished call, and add them to its run."""
        seconds = time.perf_counter() - call.started
        usage = usage_of(response)
        cost = call_cost(usage, call.model)
        record_llm_call(call.model, seconds, usage, cost)
        if call.run is not None:
            with self._lock:
                call.run.llm_calls += 1
                call.run.input_tokens += usage.input_tokens
                call.run.output_tokens += usage.output_tokens
                call.run.cost_usd += cost or 0.0
        log.info(
            "llm call",
            extra=self._extra(
                model=call.model,
                response_model=usage.response_model,
                duration_ms=round(seconds * 1000, 2),
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cached_input_tokens=usage.cached_input_tokens,
                cost_usd=round(cost, 8) if cost is not None else None,
                finish_reason=usage.finish_reason,
                tool_calls=list(usage.tool_calls),
            ),
        )
        if call.span is not None:
            call.span.set_attributes(usage_span_attributes(usage, cost))
            call.span.end()

    def fail(self, call: LlmCall, error: BaseException) -> None:
        """Count a failed call by model and exception type."""
        seconds = time.perf_counter() - call.started
        record_llm_error(call.model, seconds, error)
        log.warning(
            "llm call failed",
            extra=self._extra(
                model=call.model,
                duration_ms=round(seconds * 1000, 2),
                error_type=type(error).__name__,
                status_code=getattr(error, "status_code", None),
                error=str(error)[:500],
            ),
        )
        if call.span is not None:
            mark_error(call.span, error)
            call.span.end()


__all__ = ["ModelCalls"]
