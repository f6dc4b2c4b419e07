"""RunObserver: a LangChain callback handler that logs, measures and traces one graph run.

It recognises, from LangChain's callback events:
- the run: the first chain start it sees (the compiled graph, parent unknown to it);
- the nodes: chain starts directly under the run whose name equals `metadata["langgraph_node"]`;
- chat-model calls: `on_chat_model_start` / `on_llm_end`, accounted by `graph.model_calls`.
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
from langgraph.errors import GraphBubbleUp, GraphDrained, GraphInterrupt
from opentelemetry.trace import Tracer

from core.observability import metrics as m
from core.observability.spans import mark_error, now_ns, start_agent_span, start_child_span
from core.observability.tracing import get_tracer
from graph.model_calls import ModelCalls
from graph.node_reports import NodeReports
from graph.reports import REPORT
from graph.run_control import CHECKPOINT_FIRST
from graph.run_input import describe_input
from graph.run_records import NodeCall, RunCall
from graph.run_summary import report_run_end

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
        self._parents: dict[UUID, UUID | None] = {}
        self._reports = NodeReports(
            extra=self._extra, span_attrs=self._span_attrs, tracer=self._tracer
        )
        self._models = ModelCalls(
            lock=self._lock, tracer=self._tracer, extra=self._extra, span_attrs=self._span_attrs
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
            node, run = self._pop(run_id)
            if node is not None:
                self._end_node(node, outputs)
            elif run is not None:
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
            node, run = self._pop(run_id)
            if node is not None:
                self._fail_node(node, error)
            elif run is not None:
                if isinstance(error, GraphInterrupt):
                    outcome = "interrupted"
                elif isinstance(error, GraphDrained) and error.reason == CHECKPOINT_FIRST:
                    outcome = "checkpointed"  # saved before a side effect; a next pass goes on
                elif isinstance(error, asyncio.CancelledError | GraphDrained):
                    outcome = "cancelled"  # stopped at once, or at a step boundary
                else:
                    outcome = "error"
                self._end_run(run, outcome, error)

    def on_custom_event(
        self,
        name: str,
        data: Any,
        *,
        run_id: UUID,
        tags: list[str] | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """A node's report (`graph.reports`): read it for the node that sent it."""
        if name != REPORT or not isinstance(data, Mapping):
            return
        with self._lock:
            owner = self._owner(run_id)
            if isinstance(owner, NodeCall):
                self._reports.read_report(owner, data)

    def _pop(self, run_id: UUID) -> tuple[NodeCall | None, RunCall | None]:
        """Forget the chain `run_id`: the node it was, else the run it was (else neither)."""
        self._parents.pop(run_id, None)
        node = self._nodes.pop(run_id, None)
        return (node, None) if node is not None else (None, self._runs.pop(run_id, None))

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
        report_run_end(run, outcome, error, extra=self._extra)
        # Drop anything of this run that never reported its end (cancellation mid-call).
        for key in [key for key, node in self._nodes.items() if node.run is run]:
            del self._nodes[key]
        self._models.drop_run(run)

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
        with self._lock:
            self._parents[run_id] = parent_run_id
            owner = self._owner(parent_run_id)
            self._models.start(
                run_id,
                run=owner.run if isinstance(owner, NodeCall) else owner,
                parent_span=owner.span if owner is not None else None,
                metadata=metadata,
                invocation_params=kwargs.get("invocation_params") or {},
            )

    def on_llm_end(
        self, response: LLMResult, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        """Record latency, tokens and cost of a finished model call."""
        with self._lock:
            self._parents.pop(run_id, None)
            call = self._models.pop(run_id)
        if call is not None:
            self._models.finish(call, response)

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
            call = self._models.pop(run_id)
        if call is not None:
            self._models.fail(call, error)


__all__ = ["RunObserver"]
