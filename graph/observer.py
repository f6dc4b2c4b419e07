"""Instrument a LangGraph run: logs, metrics and spans from its callbacks, no node code changes.

`instrument_run_config(config, run_id=..., thread_id=..., tenant_id=..., user_id=...)` returns a
config whose callbacks hold a `RunObserver` (`graph.run_observer`) and a LangSmith tracer when
configured. What the observer reads of each node's output is `graph.node_reports`.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, cast
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableConfig

from core.observability.callbacks import add_handlers, handlers_of
from core.observability.langsmith import (
    has_langsmith_tracer,
    langsmith_metadata,
    langsmith_tags,
    langsmith_tracer,
)
from core.observability.logging import bind_log_context as bind_log_fields
from graph.node_reports import tool_label
from graph.run_input import describe_input
from graph.run_observer import RunObserver


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
    if langsmith and not has_langsmith_tracer(handlers_of(callbacks)):
        tracer = langsmith_tracer()
        if tracer is not None:
            handlers.append(tracer)
    out["callbacks"] = add_handlers(callbacks, handlers)
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
        bind_log_fields(
            run_id=run, thread_id=thread, tenant_id=tenant, user_id=user, request_id=request_id
        )
    return cast(RunnableConfig, out)


__all__ = [
    "RunObserver",
    "describe_input",
    "instrument_run_config",
    "tool_label",
]
