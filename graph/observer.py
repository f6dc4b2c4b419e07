"""Observe a LangGraph run from its callbacks: logs, metrics and spans, no node code changes.

`instrument_run_config(config, run_id=..., thread_id=..., tenant_id=..., user_id=...)` returns a
config whose callbacks hold a `RunObserver` (and a LangSmith tracer when configured). The
observer recognises, from LangChain's callback events:

- the run: the first chain start it sees (the compiled graph, parent unknown to it);
- the nodes: chain starts directly under the run whose name equals `metadata["langgraph_node"]`;
- chat-model calls: `on_chat_model_start` / `on_llm_end` (model, latency, `usage_metadata`);
- what happened inside a node, from its input and output state: input refusals, retrieval
  hits, the guard's tool-call verdicts, approval requests (`GraphInterrupt`) and decisions,
  executed/failed/denied/rejected tool calls (`actions`), the final response.

The observer is a synchronous handler with `run_inline = True`: LangChain calls it directly
on the event loop, in the graph's own context (no task or thread per event).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager
from langchain_core.outputs import ChatGeneration, LLMResult
from langchain_core.runnables import RunnableConfig
from langchain_core.tracers.langchain import LangChainTracer
from langgraph.errors import GraphBubbleUp, GraphInterrupt
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from core.budget.prices import known_cost_usd as cost_usd
from core.observability import metrics as m
from core.observability.langsmith import langsmith_metadata, langsmith_tags, langsmith_tracer
from core.observability.redact import redact_text
from core.observability.tracing import context_from_traceparent, get_tracer

log = logging.getLogger("steward.run")

INPUT_PREVIEW_CHARS = 200
_MAX_PARENT_HOPS = 64
_DEFAULT: Any = object()


def _now_ns() -> int:
    return time.time_ns()


@dataclass(eq=False)
class _Run:
    """One graph invocation."""

    name: str
    started: float
    span: Span | None
    kind: str
    interrupted: bool = False
    refusal: str | None = None
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    actions: list[tuple[str, str]] = field(default_factory=list)
    response: Mapping[str, Any] | None = None


@dataclass(eq=False)
class _Node:
    """One node execution (one attempt)."""

    name: str
    run: _Run
    started: float
    start_ns: int
    span: Span | None
    actions_in: int
    plan_in: list[Mapping[str, Any]]


@dataclass(eq=False)
class _Llm:
    """One chat-model call."""

    model: str
    run: _Run | None
    started: float
    span: Span | None


def tool_label(name: str) -> str:
    """A bounded metric label for a tool name: registered tools by name, anything else `other`.

    The model chooses tool names; an unbounded label would let it create series at will.
    """
    try:
        from graph.tools import TOOLS
    except ImportError:  # pragma: no cover - graph/ is part of the same distribution
        return "other"
    return name if name in TOOLS else "other"


def denial_reason_code(reason: str) -> str:
    """Map guard_tools' human-readable denial reason to a fixed code for the metric label."""
    lowered = reason.lower()
    for needle, code in (
        ("not available", "tool_not_allowed"),
        ("not valid json", "invalid_json"),
        ("invalid arguments", "invalid_arguments"),
        ("limit reached", "tool_call_limit"),
        ("denied by policy", "policy"),
    ):
        if needle in lowered:
            return code
    return "other"


def _message_text(message: Any) -> tuple[str | None, str]:
    """Return (role, text) of a message given as a dict, a LangChain message or a tuple."""
    if isinstance(message, Mapping):
        role = message.get("role") or message.get("type")
        content = message.get("content", "")
    elif isinstance(message, tuple | list) and len(message) == 2:
        role, content = message[0], message[1]
    else:
        role = getattr(message, "type", None)
        content = getattr(message, "content", "")
    if isinstance(content, list):
        parts = [
            p if isinstance(p, str) else str(p.get("text", ""))
            for p in content
            if isinstance(p, str) or (isinstance(p, Mapping) and p.get("type") == "text")
        ]
        content = "".join(parts)
    return (str(role) if role is not None else None), str(content)


def describe_input(inputs: Any) -> tuple[str, dict[str, Any]]:
    """Classify a run's input (`input`, `resume`, `continue`) and summarise it for the log.

    The user text is truncated and masked: the log gets a redacted preview, never raw input.
    """
    if inputs is None:
        return "continue", {}
    resume = getattr(inputs, "resume", None)
    if resume is not None or type(inputs).__name__ == "Command":
        decisions = resume.get("decisions") if isinstance(resume, Mapping) else None
        types = [str(d.get("type")) for d in decisions or [] if isinstance(d, Mapping)]
        return "resume", {"decisions": types}
    if isinstance(inputs, Mapping):
        messages = inputs.get("messages")
        if isinstance(messages, Sequence) and not isinstance(messages, str) and messages:
            role, text = _message_text(messages[-1])
            preview = redact_text(text[:INPUT_PREVIEW_CHARS])
            return "input", {"input_role": role, "input_chars": len(text), "input_preview": preview}
    return "input", {}


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
        self._runs: dict[UUID, _Run] = {}
        self._nodes: dict[UUID, _Node] = {}
        self._llms: dict[UUID, _Llm] = {}
        self._parents: dict[UUID, UUID | None] = {}

    # ------------------------------------------------------------------------------ helpers

    def _extra(self, **fields: Any) -> dict[str, Any]:
        return {**self.ids, **fields}

    def _span_attrs(self) -> dict[str, str]:
        return {f"steward.{k}": v for k, v in self.ids.items()}

    def _owner(self, parent_run_id: UUID | None) -> _Node | _Run | None:
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
            span = self._tracer.start_span(
                f"invoke_agent {name}",
                context=context_from_traceparent(self._traceparent),
                kind=SpanKind.INTERNAL,
                attributes={
                    "gen_ai.operation.name": "invoke_agent",
                    "gen_ai.agent.name": name,
                    **(
                        {"gen_ai.conversation.id": self.ids["thread_id"]}
                        if "thread_id" in self.ids
                        else {}
                    ),
                    **({"enduser.id": self.ids["user_id"]} if "user_id" in self.ids else {}),
                    **self._span_attrs(),
                    "steward.run.kind": kind,
                },
            )
        self._runs[run_id] = _Run(name=name, started=time.perf_counter(), span=span, kind=kind)
        log.info("run started", extra=self._extra(graph=name, run_kind=kind, **summary))

    def _start_node(
        self, run_id: UUID, name: str, run: _Run, inputs: Any, metadata: Mapping[str, Any]
    ) -> None:
        state = inputs if isinstance(inputs, Mapping) else {}
        span = None
        start_ns = _now_ns()
        if self._tracer is not None and run.span is not None:
            attributes: dict[str, Any] = {"langgraph.node": name, **self._span_attrs()}
            step = metadata.get("langgraph_step")
            if isinstance(step, int):
                attributes["langgraph.step"] = step
            span = self._tracer.start_span(
                f"node {name}",
                context=trace.set_span_in_context(run.span),
                kind=SpanKind.INTERNAL,
                attributes=attributes,
                start_time=start_ns,
            )
        self._nodes[run_id] = _Node(
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
                self._end_run(run_id, run, outcome, None)

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
                self._end_run(run_id, run, outcome, error)

    def _end_node(self, node: _Node, outputs: Any) -> None:
        seconds = time.perf_counter() - node.started
        m.NODE_SECONDS.labels(node=node.name, status="ok").observe(seconds)
        if isinstance(outputs, Mapping):
            self._read_node_output(node, outputs)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "node finished",
                extra=self._extra(node=node.name, duration_ms=round(seconds * 1000, 2)),
            )
        if node.span is not None:
            node.span.end()

    def _fail_node(self, node: _Node, error: BaseException) -> None:
        seconds = time.perf_counter() - node.started
        if isinstance(error, GraphInterrupt):
            status = "interrupted"
            node.run.interrupted = True
            self._approval_requested(node)
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
                node.span.record_exception(error)
                node.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            node.span.end()

    def _end_run(self, run_id: UUID, run: _Run, outcome: str, error: BaseException | None) -> None:
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
                run.span.record_exception(error)
                run.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            run.span.end()
        # Drop anything of this run that never reported its end (cancellation mid-call).
        for table in (self._nodes, self._llms):
            stale = [key for key, value in table.items() if getattr(value, "run", None) is run]
            for key in stale:
                del table[key]

    # ----------------------------------------------------------------- what the nodes did

    def _read_node_output(self, node: _Node, outputs: Mapping[str, Any]) -> None:
        refusal = outputs.get("refusal")
        if isinstance(refusal, str) and refusal:
            node.run.refusal = refusal
            m.GUARDRAIL_BLOCKS.labels(stage="input", reason=refusal).inc()
            log.warning("input blocked", extra=self._extra(node=node.name, reason_code=refusal))
        if node.name == "retrieve" and isinstance(outputs.get("retrieved"), list):
            self._retrieval_hits(node, outputs["retrieved"])
        plan = outputs.get("plan")
        if isinstance(plan, list):
            if node.name == "guard_tools":
                self._tool_verdicts(node, plan)
            elif node.name == "approval":
                self._approval_decisions(node, plan)
        actions = outputs.get("actions")
        if isinstance(actions, list):
            self._tool_outcomes(node, actions[node.actions_in :])
        response = outputs.get("response")
        if isinstance(response, Mapping):
            node.run.response = response

    def _retrieval_hits(self, node: _Node, chunks: list[Any]) -> None:
        hits = [
            {"id": str(c.get("id")), "score": round(float(c.get("score") or 0.0), 4)}
            for c in chunks
            if isinstance(c, Mapping)
        ]
        m.RETRIEVAL_HITS.observe(len(hits))
        log.info("retrieval hits", extra=self._extra(count=len(hits), hits=hits))
        if node.span is not None:
            node.span.set_attribute("steward.retrieval.hits", [str(h["id"]) for h in hits])

    def _tool_verdicts(self, node: _Node, plan: list[Any]) -> None:
        for call in plan:
            if not isinstance(call, Mapping):
                continue
            tool, verdict = str(call.get("name")), str(call.get("verdict"))
            reason = str(call.get("reason") or "")
            log.info(
                "tool call decided",
                extra=self._extra(
                    tool=tool, call_id=call.get("call_id"), verdict=verdict, reason=reason
                ),
            )
            if verdict == "deny":
                m.GUARDRAIL_BLOCKS.labels(stage="tool", reason=denial_reason_code(reason)).inc()
            if node.span is not None:
                node.span.add_event(
                    "tool call decided",
                    {
                        "gen_ai.tool.name": tool,
                        "steward.tool.verdict": verdict,
                        "steward.tool.reason": reason[:200],
                    },
                )

    def _approval_requested(self, node: _Node) -> None:
        pending = [
            c for c in node.plan_in if c.get("verdict") == "approve" and c.get("approval") is None
        ]
        for call in pending:
            m.APPROVAL_REQUESTS.labels(tool=tool_label(str(call.get("name")))).inc()
        if pending or node.name == "approval":
            log.info(
                "approval requested",
                extra=self._extra(
                    node=node.name,
                    tools=[str(c.get("name")) for c in pending],
                    call_ids=[str(c.get("call_id")) for c in pending],
                ),
            )

    def _approval_decisions(self, node: _Node, plan: list[Any]) -> None:
        before = {str(c.get("call_id")): c for c in node.plan_in}
        for call in plan:
            if not isinstance(call, Mapping):
                continue
            previous = before.get(str(call.get("call_id")))
            if previous is None or previous.get("verdict") != "approve":
                continue
            approval = call.get("approval")
            if isinstance(approval, Mapping) and previous.get("approval") is None:
                decision, reviewer = str(approval.get("decision")), approval.get("reviewer")
            elif call.get("verdict") == "deny":
                decision, reviewer = "reject", None
            else:
                continue
            m.APPROVAL_DECISIONS.labels(decision=decision).inc()
            log.info(
                "approval applied",
                extra=self._extra(
                    tool=str(call.get("name")),
                    call_id=call.get("call_id"),
                    decision=decision,
                    reviewer=reviewer,
                ),
            )

    def _tool_outcomes(self, node: _Node, records: list[Any]) -> None:
        end_ns = _now_ns()
        for record in records:
            if not isinstance(record, Mapping):
                continue
            tool, status = str(record.get("name")), str(record.get("status"))
            node.run.actions.append((tool, status))
            m.TOOL_CALLS.labels(tool=tool_label(tool), outcome=status).inc()
            if status not in ("executed", "failed"):
                continue  # denials and rejections were logged as "tool call decided" and
                # "approval applied" when they happened
            log.log(
                logging.INFO if status == "executed" else logging.WARNING,
                f"tool call {status}",
                extra=self._extra(
                    tool=tool,
                    call_id=record.get("id"),
                    status=status,
                    detail=str(record.get("detail") or "")[:300],
                ),
            )
            if node.span is not None and self._tracer is not None:
                # Tools run inside run_tools without callbacks of their own: the span covers
                # the node's execution (steward.tool.timing = "node"), not the call alone.
                span = self._tracer.start_span(
                    f"execute_tool {tool}",
                    context=trace.set_span_in_context(node.span),
                    kind=SpanKind.INTERNAL,
                    start_time=node.start_ns,
                    attributes={
                        "gen_ai.operation.name": "execute_tool",
                        "gen_ai.tool.name": tool,
                        "gen_ai.tool.call.id": str(record.get("id")),
                        "steward.tool.status": status,
                        "steward.tool.timing": "node",
                        **self._span_attrs(),
                    },
                )
                if status == "failed":
                    span.set_status(Status(StatusCode.ERROR, "tool failed"))
                span.end(end_time=end_ns)

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
        params: Mapping[str, Any] = kwargs.get("invocation_params") or {}
        model = str(
            params.get("model")
            or params.get("model_name")
            or metadata.get("ls_model_name")
            or "unknown"
        )
        with self._lock:
            self._parents[run_id] = parent_run_id
            owner = self._owner(parent_run_id)
            run = owner.run if isinstance(owner, _Node) else owner
            span = None
            parent_span = owner.span if owner is not None else None
            if self._tracer is not None and parent_span is not None:
                span = self._tracer.start_span(
                    f"chat {model}",
                    context=trace.set_span_in_context(parent_span),
                    kind=SpanKind.CLIENT,
                    attributes={
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": str(metadata.get("ls_provider") or "unknown"),
                        "gen_ai.request.model": model,
                        **self._span_attrs(),
                    },
                )
            self._llms[run_id] = _Llm(model=model, run=run, started=time.perf_counter(), span=span)

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
        response_model = response_model or llm_output.get("model_name")
        input_tokens = int(usage.get("input_tokens") or 0)
        output_tokens = int(usage.get("output_tokens") or 0)
        details = usage.get("input_token_details") or {}
        cached = int(details.get("cache_read") or 0) if isinstance(details, Mapping) else 0
        cost = None
        for candidate in (response_model, call.model):
            if candidate:
                cost = cost_usd(
                    candidate,
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cached_input_tokens=cached,
                )
                if cost is not None:
                    break

        model = call.model
        m.LLM_CALLS.labels(model=model, status="ok").inc()
        m.LLM_SECONDS.labels(model=model).observe(seconds)
        m.LLM_TOKENS.labels(model=model, kind="input").inc(input_tokens)
        m.LLM_TOKENS.labels(model=model, kind="output").inc(output_tokens)
        if cached:
            m.LLM_TOKENS.labels(model=model, kind="cached_input").inc(cached)
        if cost is None:
            m.LLM_UNPRICED_CALLS.labels(model=model).inc()
        else:
            m.LLM_COST_USD.labels(model=model).inc(cost)
        if call.run is not None:
            with self._lock:
                call.run.llm_calls += 1
                call.run.input_tokens += input_tokens
                call.run.output_tokens += output_tokens
                call.run.cost_usd += cost or 0.0
        log.info(
            "llm call",
            extra=self._extra(
                model=model,
                response_model=response_model,
                duration_ms=round(seconds * 1000, 2),
                input_tokens=input_tokens,
                output_tokens=output_tokens,
                cached_input_tokens=cached,
                cost_usd=round(cost, 8) if cost is not None else None,
                finish_reason=finish_reason,
                tool_calls=tool_calls,
            ),
        )
        if call.span is not None:
            attributes: dict[str, Any] = {
                "gen_ai.usage.input_tokens": input_tokens,
                "gen_ai.usage.output_tokens": output_tokens,
            }
            if response_model:
                attributes["gen_ai.response.model"] = response_model
            if finish_reason:
                attributes["gen_ai.response.finish_reasons"] = [finish_reason]
            if cost is not None:
                attributes["steward.cost_usd"] = cost
            call.span.set_attributes(attributes)
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
        error_type = type(error).__name__
        m.LLM_CALLS.labels(model=call.model, status="error").inc()
        m.LLM_ERRORS.labels(model=call.model, error_type=error_type).inc()
        m.LLM_SECONDS.labels(model=call.model).observe(seconds)
        status_code = getattr(error, "status_code", None)
        log.warning(
            "llm call failed",
            extra=self._extra(
                model=call.model,
                duration_ms=round(seconds * 1000, 2),
                error_type=error_type,
                status_code=status_code,
                error=str(error)[:500],
            ),
        )
        if call.span is not None:
            call.span.record_exception(error)
            call.span.set_status(Status(StatusCode.ERROR, error_type))
            call.span.end()


def _add_handlers(callbacks: Any, handlers: list[BaseCallbackHandler]) -> Any:
    if callbacks is None:
        return list(handlers)
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        for handler in handlers:
            manager.add_handler(handler, inherit=True)
        return manager
    return [*callbacks, *handlers]


def _has_langsmith_tracer(callbacks: Any) -> bool:
    handlers = (
        callbacks.handlers if isinstance(callbacks, BaseCallbackManager) else (callbacks or [])
    )
    return any(isinstance(h, LangChainTracer) for h in handlers)


def instrument_run_config(
    config: RunnableConfig | None = None,
    *,
    run_id: str | UUID | None = None,
    thread_id: str | UUID | None = None,
    tenant_id: str | None = None,
    user_id: str | None = None,
    request_id: str | None = None,
    traceparent: str | None = None,
    bind_log_context: bool = True,
    langsmith: bool = True,
    otel: bool = True,
    log_inputs: bool = True,
) -> RunnableConfig:
    """Return a copy of `config` that logs, measures and traces the run it is passed to.

    Adds a `RunObserver` (and a LangSmith tracer when LANGSMITH_TRACING is on) to the
    callbacks, puts `thread_id`, `run_id`, `tenant_id` and `user_id` in `metadata` (so they
    reach LangSmith and the log lines of the nodes) plus tags, and binds the ids to the log
    context of the calling task. Ids not given are read from `config["configurable"]`; a
    missing run id is generated (and becomes the LangChain root run id).

    Call it in the task that executes the run (the runs worker), once per invocation.

    Args:
        config: the run's config (`configurable.thread_id`, ...); not modified.
        run_id: the service's run id.
        thread_id: the conversation (default `configurable.thread_id`).
        tenant_id: the caller's tenant (default `configurable.tenant_id`).
        user_id: the caller (default `configurable.user_id`).
        request_id: the HTTP request id that created the run, if known.
        traceparent: W3C traceparent of the HTTP request that created the run (links the
            run span under the request span when the run executes in another task).
        bind_log_context: bind the ids to structlog's context variables in this task.
        langsmith: add a LangSmith tracer when LangSmith tracing is configured.
        otel: create OpenTelemetry spans when tracing is configured (False: logs and
            metrics only, e.g. for unsampled runs).
        log_inputs: include a masked preview of the user's message in "run started".

    Returns:
        The instrumented config, ready for `graph.ainvoke(input, config)`.
    """
    out: dict[str, Any] = dict(config or {})
    configurable: Mapping[str, Any] = out.get("configurable") or {}

    def pick(value: Any, key: str) -> str | None:
        value = value if value is not None else configurable.get(key)
        return str(value) if value is not None else None

    thread = pick(thread_id, "thread_id")
    tenant = pick(tenant_id, "tenant_id")
    user = pick(user_id, "user_id")
    if run_id is None:
        generated = uuid.uuid4()
        out.setdefault("run_id", generated)
        run = str(out["run_id"])
    else:
        run = str(run_id)

    handlers: list[BaseCallbackHandler] = [
        RunObserver(
            run_id=run,
            thread_id=thread,
            tenant_id=tenant,
            user_id=user,
            request_id=request_id,
            traceparent=traceparent,
            log_inputs=log_inputs,
            **({} if otel else {"tracer": None}),
        )
    ]
    callbacks = out.get("callbacks")
    if langsmith and not _has_langsmith_tracer(callbacks):
        tracer = langsmith_tracer()
        if tracer is not None:
            handlers.append(tracer)
    out["callbacks"] = _add_handlers(callbacks, handlers)
    metadata = dict(out.get("metadata") or {})
    metadata.update(
        langsmith_metadata(run_id=run, thread_id=thread, tenant_id=tenant, user_id=user)
    )
    if request_id is not None:
        metadata["request_id"] = request_id
    out["metadata"] = metadata
    tags = list(out.get("tags") or [])
    out["tags"] = tags + [t for t in langsmith_tags(tenant_id=tenant) if t not in tags]
    if bind_log_context:
        from core.observability.logging import bind_log_context as bind

        bind(run_id=run, thread_id=thread, tenant_id=tenant, user_id=user, request_id=request_id)
    return cast(RunnableConfig, out)


__all__ = [
    "RunObserver",
    "denial_reason_code",
    "describe_input",
    "instrument_run_config",
    "tool_label",
]
