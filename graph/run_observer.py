"""RunObserver: a LangChain callback handler that logs, measures and traces one graph run.

It recognises, from LangChain's callback events:
- the run: the first chain start it sees (the compiled graph, parent unknown to it);
- the nodes: chain starts directly under the run whose name equals `metadata["langgraph_node"]`;
- chat-model calls: `on_chat_model_start` / `on_llm_end` (model, latency, `usage_metadata`).
What happened inside a node is read from the codes and records it returns
(`graph.node_reports`). The handler is synchronous with `run_inline = True`: LangChain calls
it directly on the event loop, in the graph's own context (no task or thread per event).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.outputs import LLMResult
from langgraph.errors import GraphBubbleUp, GraphInterrupt
from opentelemetry.trace import Tracer

from core.observability import metrics as m
from core.observability.llm_calls import (
    call_cost,
    record_llm_call,
    record_llm_error,
    requested_model,
    usage_of,
    usage_span_attributes,
)
from core.observability.spans import (
    mark_error,
    now_ns,
    start_agent_span,
    start_chat_span,
    start_child_span,
)
from core.observability.tracing import get_tracer
from graph.node_reports import NodeReports
from graph.run_input import describe_input
from graph.run_records import LlmCall, NodeCall, RunCall

log = logging.getLogger("steward.run")

_MAX_PARENT_HOPS = 64
_DEFAULT: Any = object()


class RunObserver(BaseCallbackHandler):
    """LangChain callback handler that turns one run's events into logs, metrics and spans.

    One instance per run (it carries the run's ids); it also copes with being reused for
    several sequential invocations (e.g. a turn and its resume) or with concurrent ones.
    """

    run_inline = True
    raise_error = False

    def __init__(
        self,
        *,
        run_id: str,
        thread_id: str | None = None,
        tenant_id: str | None = None,
        user_id: str | None = None,
        request_id: str | None = None,
        traceparent: str | None = None,
        tracer: Tracer | None = _DEFAULT,
        log_inputs: bool = True,
    ) -> None:
        """Create the observer.

        Args:
            run_id: the service's run id (logs, spans, LangSmith metadata).
            thread_id: the conversation.
            tenant_id: the caller's tenant.
            user_id: the caller.
            request_id: the HTTP request that started the run, if any.
            traceparent: W3C parent of the run span (the HTTP request that queued the run);
                default is the OpenTelemetry context current when the run starts.
            tracer: OpenTelemetry tracer; default `tracing.get_tracer()`, None for no spans.
            log_inputs: log a masked, truncated preview of the user's message.
        """
        super().__init__()
        ids = {
            "run_id": run_id,
            "thread_id": thread_id,
            "tenant_id": tenant_id,
            "user_id": user_id,
            "request_id": request_id,
        }
        self.ids: dict[str, str] = {k: str(v) for k, v in ids.items() if v is not None}
        self._tracer: Tracer | None = get_tracer() if tracer is _DEFAULT else tracer
        self._traceparent = traceparent
        self._log_inputs = log_inputs
        self._lock = threading.Lock()
        self._runs: dict[UUID, RunCall] = {}
        self._nodes: dict[UUID, NodeCall] = {}
        self._llms: dict[UUID, LlmCall] = {}
        self._parents: dict[UUID, UUID | None] = {}
        self._reports = NodeReports(
            extra=self._extra, span_attrs=self._span_attrs, tracer=self._tracer
        )

    def _extra(self, **fields: Any) -> dict[str, Any]:
        return {**self.ids, **fields}

    def _span_attrs(self) -> dict[str, str]:
        return {f"steward.{k}": v for k, v in self.ids.items()}

    def _owner(self, parent_run_id: UUID | None) -> NodeCall | RunCall | None:
        """Walk up from `parent_run_id` to the nearest node or run this observer tracks."""
        current = parent_run_id
        for _ in range(_MAX_PARENT_HOPS):
            if current is None:
                return None
            node = self._nodes.get(current)
            if node is not None:
                return node
            run = self._runs.get(current)
            if run is not None:
                return run
            current = self._parents.get(current)
        return None

    # ------------------------------------------------------------------------------- chains

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Start a run (first chain seen), a node (direct child named as its node) or nothing."""
        name = str(kwargs.get("name") or (serialized or {}).get("name") or "graph")
        with self._lock:
            known_parent = parent_run_id is not None and parent_run_id in self._parents
            self._parents[run_id] = parent_run_id
            if not known_parent:
                self._start_run(run_id, name, inputs)
                return
            run = self._runs.get(parent_run_id) if parent_run_id is not None else None
            if run is not None and (metadata or {}).get("langgraph_node") == name:
                self._start_node(run_id, name, run, inputs, metadata or {})

    def _start_run(self, run_id: UUID, name: str, inputs: Any) -> None:
        kind, summary = describe_input(inputs)
        if not self._log_inputs:
            summary.pop("input_preview", None)
        span = None
        if self._tracer is not None:
            span = start_agent_span(
                self._tracer,
                name,
                traceparent=self._traceparent,
                conversation_id=self.ids.get("thread_id"),
                user_id=self.ids.get("user_id"),
                attributes={**self._span_attrs(), "steward.run.kind": kind},
            )
        self._runs[run_id] = RunCall(name=name, started=time.perf_counter(), span=span, kind=kind)
        log.info("run started", extra=self._extra(graph=name, run_kind=kind, **summary))

    def _start_node(
        self, run_id: UUID, name: str, run: RunCall, inputs: Any, metadata: Mapping[str, Any]
    ) -> None:
        state = inputs if isinstance(inputs, Mapping) else {}
        span = None
        start_ns = now_ns()
        if self._tracer is not None and run.span is not None:
            attributes: dict[str, Any] = {"langgraph.node": name, **self._span_attrs()}
            step = metadata.get("langgraph_step")
            if isinstance(step, int):
                attributes["langgraph.step"] = step
            span = start_child_span(
                self._tracer, f"node {name}", run.span, attributes=attributes, start_time=start_ns
            )
        self._nodes[run_id] = NodeCall(
            name=name,
            run=run,
            started=time.perf_counter(),
            start_ns=start_ns,
            span=span,
            actions_in=len(state.get("actions") or []),
            plan_in=list(state.get("plan") or []),
        )

    def on_chain_end(
        self,
        outputs: dict[str, Any] | Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Finish a node (and read what it did from its output) or the run."""
        with self._lock:
            self._parents.pop(run_id, None)
            node = self._nodes.pop(run_id, None)
            if node is not None:
                self._end_node(node, outputs)
                return
            run = self._runs.pop(run_id, None)
            if run is not None:
                if isinstance(outputs, Mapping) and outputs.get("__interrupt__"):
                    run.interrupted = True
                outcome = (
                    "interrupted" if run.interrupted else "refused" if run.refusal else "success"
                )
                self._end_run(run, outcome, None)

    def on_chain_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Finish a node or the run that raised (interrupts are not errors)."""
        with self._lock:
            self._parents.pop(run_id, None)
            node = self._nodes.pop(run_id, None)
            if node is not None:
                self._fail_node(node, error)
                return
            run = self._runs.pop(run_id, None)
            if run is not None:
                if isinstance(error, GraphInterrupt):
                    outcome = "interrupted"
                elif isinstance(error, asyncio.CancelledError):
                    outcome = "cancelled"
                else:
                    outcome = "error"
                self._end_run(run, outcome, error)

    def _end_node(self, node: NodeCall, outputs: Any) -> None:
        seconds = time.perf_counter() - node.started
        m.NODE_SECONDS.labels(node=node.name, status="ok").observe(seconds)
        if isinstance(outputs, Mapping):
            self._reports.read_output(node, outputs)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "node finished",
                extra=self._extra(node=node.name, duration_ms=round(seconds * 1000, 2)),
            )
        if node.span is not None:
            node.span.end()

    def _fail_node(self, node: NodeCall, error: BaseException) -> None:
        seconds = time.perf_counter() - node.started
        if isinstance(error, GraphInterrupt):
            status = "interrupted"
            node.run.interrupted = True
            self._reports.approval_requested(node)
        elif isinstance(error, GraphBubbleUp):
            status = "ok"  # a Command travelling to a parent graph
        elif isinstance(error, asyncio.CancelledError):
            status = "cancelled"
        else:
            status = "error"
            log.warning(
                "node failed",
                extra=self._extra(
                    node=node.name, error_type=type(error).__name__, error=str(error)[:500]
                ),
            )
        m.NODE_SECONDS.labels(node=node.name, status=status).observe(seconds)
        if node.span is not None:
            node.span.set_attribute("steward.node.status", status)
            if status == "error":
                mark_error(node.span, error)
            node.span.end()

    def _end_run(self, run: RunCall, outcome: str, error: BaseException | None) -> None:
        seconds = time.perf_counter() - run.started
        m.RUNS.labels(outcome=outcome).inc()
        m.RUN_SECONDS.labels(outcome=outcome).observe(seconds)
        fields: dict[str, Any] = {
            "graph": run.name,
            "run_kind": run.kind,
            "outcome": outcome,
            "duration_ms": round(seconds * 1000, 2),
            "llm_calls": run.llm_calls,
            "input_tokens": run.input_tokens,
            "output_tokens": run.output_tokens,
            "cost_usd": round(run.cost_usd, 8),
            "actions": [{"tool": tool, "status": status} for tool, status in run.actions],
        }
        if run.refusal:
            fields["refusal"] = run.refusal
        if run.response is not None:
            fields["sources"] = list(run.response.get("sources") or [])
            fields["answer_chars"] = len(str(run.response.get("answer") or ""))
        if outcome == "error" and error is not None:
            log.error(
                "run failed",
                exc_info=error,
                extra=self._extra(error_type=type(error).__name__, **fields),
            )
        else:
            log.info("run finished", extra=self._extra(**fields))
        if run.span is not None:
            run.span.set_attributes(
                {
                    "steward.outcome": outcome,
                    "gen_ai.usage.input_tokens": run.input_tokens,
                    "gen_ai.usage.output_tokens": run.output_tokens,
                    "steward.cost_usd": run.cost_usd,
                    "steward.llm_calls": run.llm_calls,
                }
            )
            if outcome == "error" and error is not None:
                mark_error(run.span, error)
            run.span.end()
        # Drop anything of this run that never reported its end (cancellation mid-call).
        for table in (self._nodes, self._llms):
            stale = [key for key, value in table.items() if getattr(value, "run", None) is run]
            for key in stale:
                del table[key]

    # ------------------------------------------------------------------------- chat models

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: list[list[Any]],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Start timing (and a `chat <model>` span for) one model call."""
        self._llm_start(run_id, parent_run_id, metadata or {}, kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: list[str],
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Completion-style models: same as a chat call."""
        self._llm_start(run_id, parent_run_id, metadata or {}, kwargs)

    def _llm_start(
        self,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: Mapping[str, Any],
        kwargs: Mapping[str, Any],
    ) -> None:
        model = requested_model(kwargs.get("invocation_params") or {}, metadata)
        with self._lock:
            self._parents[run_id] = parent_run_id
            owner = self._owner(parent_run_id)
            run = owner.run if isinstance(owner, NodeCall) else owner
            span = None
            parent_span = owner.span if owner is not None else None
            if self._tracer is not None and parent_span is not None:
                span = start_chat_span(
                    self._tracer,
                    parent_span,
                    model=model,
                    provider=str(metadata.get("ls_provider") or "unknown"),
                    attributes=self._span_attrs(),
                )
            self._llms[run_id] = LlmCall(
                model=model, run=run, started=time.perf_counter(), span=span
            )

    def on_llm_end(
        self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """Record latency, tokens and cost of a finished model call."""
        with self._lock:
            self._parents.pop(run_id, None)
            call = self._llms.pop(run_id, None)
        if call is None:
            return
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

    def on_llm_error(
        self,
        error: BaseException,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        """Count a failed model call by model and exception type."""
        with self._lock:
            self._parents.pop(run_id, None)
            call = self._llms.pop(run_id, None)
        if call is None:
            return
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


__all__ = ["RunObserver"]
