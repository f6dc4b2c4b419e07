"""LangSmith tracing from the standard variables, with run metadata to find a conversation.

On when `LANGSMITH_TRACING=true` (or the older `LANGCHAIN_TRACING_V2=true`); `LANGSMITH_API_KEY`,
`LANGSMITH_ENDPOINT` and `LANGSMITH_PROJECT` are honoured. `instrument_run_config` adds an
explicit `LangChainTracer` to the run's callbacks (LangChain then adds no second, implicit
one) whose client masks PII and secrets in inputs, outputs, errors and metadata before they
leave the process (the `STEWARD_LANGSMITH_REDACT` setting, on by default). Every run of the
trace carries `thread_id`, `run_id`, `tenant_id` and `user_id` as metadata: LangSmith groups a
conversation's traces by `thread_id` in its Threads view.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.observability.redact import redact_mapping
from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from langchain_core.tracers.langchain import LangChainTracer
    from langsmith import Client

_TRUE = {"1", "true", "yes", "on"}
_REDACT = "STEWARD_LANGSMITH_REDACT"


@dataclass(frozen=True)
class LangSmithConfig:
    """What the standard LANGSMITH_* variables ask for."""

    endpoint: str | None
    api_key: str | None
    project: str
    redact: bool


def langsmith_config(environ: Mapping[str, str] | None = None) -> LangSmithConfig | None:
    """Read the LANGSMITH_* (or legacy LANGCHAIN_*) variables; None when tracing is off.

    Read on every call (not cached like langsmith's own helpers), so a process, or a test,
    can turn tracing on or point it elsewhere without restarting. Masking is the
    `langsmith_redact` setting: the process settings, or `STEWARD_LANGSMITH_REDACT` in an
    explicit `environ`.
    """
    env = os.environ if environ is None else environ

    def first(*names: str) -> str | None:
        for name in names:
            value = env.get(name, "").strip()
            if value:
                return value
        return None

    flag = first(
        "LANGSMITH_TRACING", "LANGSMITH_TRACING_V2", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING"
    )
    if flag is None or flag.lower() not in _TRUE:
        return None
    return LangSmithConfig(
        endpoint=first("LANGSMITH_ENDPOINT", "LANGCHAIN_ENDPOINT"),
        api_key=first("LANGSMITH_API_KEY", "LANGCHAIN_API_KEY"),
        project=first("LANGSMITH_PROJECT", "LANGCHAIN_PROJECT") or "default",
        redact=_redact(environ),
    )


def _redact(environ: Mapping[str, str] | None) -> bool:
    """The `langsmith_redact` setting, from the process or from an explicit environment."""
    if environ is None:
        return get_settings().langsmith_redact
    if _REDACT not in environ:
        return bool(Settings.model_fields["langsmith_redact"].default)
    return Settings.model_validate({_REDACT: environ[_REDACT]}).langsmith_redact


def anonymize(payload: dict[Any, Any]) -> dict[Any, Any]:
    """LangSmith anonymizer: mask PII and secrets in a serialized inputs/outputs mapping."""
    return redact_mapping(payload)


_clients: dict[LangSmithConfig, Client] = {}
_clients_lock = threading.Lock()


def langsmith_client(config: LangSmithConfig) -> Client:
    """Return the process-wide client for `config` (one background sender per config)."""
    with _clients_lock:
        client = _clients.get(config)
        if client is None:
            from langsmith import Client

            client = Client(
                api_url=config.endpoint,
                api_key=config.api_key,
                anonymizer=anonymize if config.redact else None,
            )
            _clients[config] = client
        return client


def warm_up_langsmith() -> bool:
    """Build the client (and what the tracer reads once) now, when LangSmith tracing is on.

    Call it at process start, off the event loop: the client's constructor reads the
    LangSmith profile file and the first run reads the runtime environment, file reads that
    would otherwise happen on the loop in the first run's path. True when tracing is on.
    """
    config = langsmith_config()
    if config is None:
        return False
    from langsmith.env import get_runtime_environment

    langsmith_client(config)
    get_runtime_environment()
    return True


def langsmith_tracer(environ: Mapping[str, str] | None = None) -> LangChainTracer | None:
    """Return a fresh `LangChainTracer` for one run, or None when LangSmith tracing is off."""
    config = langsmith_config(environ)
    if config is None:
        return None
    from langchain_core.tracers.langchain import LangChainTracer

    return LangChainTracer(project_name=config.project, client=langsmith_client(config))


def has_langsmith_tracer(handlers: Iterable[object]) -> bool:
    """Whether `handlers` already hold a `LangChainTracer` (so none is added twice)."""
    from langchain_core.tracers.langchain import LangChainTracer

    return any(isinstance(handler, LangChainTracer) for handler in handlers)


def langsmith_metadata(
    *, run_id: str | None, thread_id: str | None, tenant_id: str | None, user_id: str | None
) -> dict[str, str]:
    """The metadata every LangSmith run of a Steward run carries (None values left out)."""
    values = {"thread_id": thread_id, "run_id": run_id, "tenant_id": tenant_id, "user_id": user_id}
    return {key: str(value) for key, value in values.items() if value is not None}


def langsmith_tags(*, tenant_id: str | None) -> list[str]:
    """Tags for filtering in LangSmith's UI."""
    return ["steward", *([f"tenant:{tenant_id}"] if tenant_id else [])]


def flush_langsmith(timeout: float | None = 10.0) -> None:
    """Send every queued LangSmith run now (tests, shutdown), waiting at most `timeout` s."""
    with _clients_lock:
        clients = list(_clients.values())
    for client in clients:
        client.flush(timeout=timeout)


def reset_langsmith(timeout: float | None = 10.0) -> None:
    """Flush and forget the cached clients (tests; a changed endpoint gets a new client)."""
    flush_langsmith(timeout)
    with _clients_lock:
        _clients.clear()


__all__ = [
    "LangSmithConfig",
    "anonymize",
    "flush_langsmith",
    "has_langsmith_tracer",
    "langsmith_client",
    "langsmith_config",
    "langsmith_metadata",
    "langsmith_tags",
    "langsmith_tracer",
    "reset_langsmith",
    "warm_up_langsmith",
]
