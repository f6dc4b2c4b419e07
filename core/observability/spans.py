"""OpenTelemetry spans for an agent run, named and attributed after the GenAI conventions.

The spans know nothing of a particular workflow: an `invoke_agent` span for a run, child
spans for its steps (`node <name>`), `chat <model>` client spans for model calls and
`execute_tool <name>` spans for tool calls. Callers pass the attributes of their own.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

from core.observability.tracing import context_from_traceparent


def now_ns() -> int:
    """The wall clock in nanoseconds, the unit of span start and end times."""
    return time.time_ns()


def start_agent_span(
    tracer: Tracer,
    agent: str,
    *,
    traceparent: str | None,
    conversation_id: str | None,
    user_id: str | None,
    attributes: Mapping[str, Any],
) -> Span:
    """Start the `invoke_agent <agent>` span of one run.

    With a `traceparent` (the request that queued the run, stored with it), the span is a
    child of that request's span and carries a span link to it.

    Args:
        tracer: the tracer to use.
        agent: the agent's (graph's) name.
        traceparent: W3C parent of the span; None for the current context.
        conversation_id: `gen_ai.conversation.id` (the thread), if known.
        user_id: `enduser.id`, if known.
        attributes: further attributes.

    Returns:
        The started span; the caller ends it.
    """
    context = context_from_traceparent(traceparent)
    links: list[Link] = []
    if traceparent:
        # The request that created the run: also its parent, but a link survives a backend
        # (or a sampler) that cuts long traces, and marks the queue hop.
        created_by = trace.get_current_span(context).get_span_context()
        if created_by.is_valid:
            links.append(Link(created_by, {"steward.link": "run.created_by"}))
    return tracer.start_span(
        f"invoke_agent {agent}",
        context=context,
        kind=SpanKind.INTERNAL,
        links=links,
        attributes={
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": agent,
            **({"gen_ai.conversation.id": conversation_id} if conversation_id is not None else {}),
            **({"enduser.id": user_id} if user_id is not None else {}),
            **attributes,
        },
    )


def start_child_span(
    tracer: Tracer,
    name: str,
    parent: Span,
    *,
    attributes: Mapping[str, Any],
    kind: SpanKind = SpanKind.INTERNAL,
    start_time: int | None = None,
) -> Span:
    """Start a span under `parent` (a step of the run, or a call inside a step).

    Args:
        tracer: the tracer to use.
        name: the span's name.
        parent: the enclosing span.
        attributes: the span's attributes.
        kind: the span kind (`CLIENT` for calls to a provider).
        start_time: start in nanoseconds since the epoch; default now.

    Returns:
        The started span; the caller ends it.
    """
    return tracer.start_span(
        name,
        context=trace.set_span_in_context(parent),
        kind=kind,
        attributes=attributes,
        start_time=start_time,
    )


def start_chat_span(
    tracer: Tracer, parent: Span, *, model: str, provider: str, attributes: Mapping[str, Any]
) -> Span:
    """Start the `chat <model>` client span of one model call under `parent`."""
    return start_child_span(
        tracer,
        f"chat {model}",
        parent,
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": provider,
            "gen_ai.request.model": model,
            **attributes,
        },
    )


def record_tool_span(
    tracer: Tracer,
    parent: Span,
    *,
    tool: str,
    call_id: str,
    failed: bool,
    start_time: int,
    end_time: int,
    attributes: Mapping[str, Any],
) -> None:
    """Record a finished `execute_tool <tool>` span under `parent`, from start to end time."""
    span = start_child_span(
        tracer,
        f"execute_tool {tool}",
        parent,
        start_time=start_time,
        attributes={
            "gen_ai.operation.name": "execute_tool",
            "gen_ai.tool.name": tool,
            "gen_ai.tool.call.id": call_id,
            **attributes,
        },
    )
    if failed:
        span.set_status(Status(StatusCode.ERROR, "tool failed"))
    span.end(end_time=end_time)


def mark_error(span: Span, error: BaseException) -> None:
    """Record `error` on `span` and set its status to ERROR (named by the exception type)."""
    span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, type(error).__name__))


__all__ = [
    "mark_error",
    "now_ns",
    "record_tool_span",
    "start_agent_span",
    "start_chat_span",
    "start_child_span",
]
