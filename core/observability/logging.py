"""Structured logging: structlog in front of stdlib logging, one output path for both.

- Production: one JSON object per line. Development: structlog's human-readable console.
- Existing `logging.getLogger(__name__).info("...", extra={...})` calls keep their extra
  fields (structlog's `ExtraAdder`), and structlog loggers go through the same handler.
- Every line carries the run context: `request_id`, `run_id`, `thread_id`, `tenant_id`,
  `user_id` (bound as context variables per request/run, or read from the LangChain run
  config of the node that is logging), as `null` when unknown in JSON output.
- Every line is masked for PII and secrets just before rendering (`redact.py`).

Settings (used by `configure_logging` when no argument overrides them): `STEWARD_LOG_LEVEL`
(default INFO) and `STEWARD_LOG_FORMAT` (`json` or `console`; default from `STEWARD_ENV`).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal, TextIO

import structlog
from langchain_core.runnables.config import var_child_runnable_config
from structlog.types import EventDict, Processor, WrappedLogger

from core.observability.redact import redact_mapping
from core.settings import Settings

LogFormat = Literal["json", "console"]

CONTEXT_KEYS: tuple[str, ...] = ("request_id", "run_id", "thread_id", "tenant_id", "user_id")
"""Identifiers present on every JSON log line (null when unknown)."""

NOISY_LOGGERS: tuple[str, ...] = (
    "httpx",
    "httpx2",
    "httpcore",
    "httpcore2",
    "sentence_transformers",
    "faiss",
    "urllib3",
    "filelock",
    "alembic",
    "presidio-analyzer",
    "transformers",
)
"""Third-party loggers kept at WARNING: their INFO lines (per request, or at every start:
migration steps, recognizers loaded) add nothing to ours. uvicorn's are handled by
`steward serve`, which owns uvicorn's configuration."""

_HANDLER_MARK = "_steward_observability"

_METADATA_KEYS: dict[str, str] = {
    "run_id": "run_id",
    "thread_id": "thread_id",
    "tenant_id": "tenant_id",
    "user_id": "user_id",
    "request_id": "request_id",
}


def add_runnable_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Fill missing run identifiers from the LangChain config of the running node, if any.

    Node code logs with plain `logging`; when the caller did not bind the log context in
    the task that runs the graph, the ids still come from the config LangGraph propagates
    (`instrument_run_config` puts them in `metadata`; `configurable` is the fallback).
    """
    if all(event_dict.get(key) is not None for key in CONTEXT_KEYS):
        return event_dict
    config = var_child_runnable_config.get()
    if not config:
        return event_dict
    metadata: Mapping[str, Any] = config.get("metadata") or {}
    configurable: Mapping[str, Any] = config.get("configurable") or {}
    for key, source in _METADATA_KEYS.items():
        if event_dict.get(key) is None:
            value = metadata.get(source, configurable.get(source))
            if value is not None:
                event_dict[key] = str(value)
    return event_dict


def add_context_defaults(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Make every run identifier present (null when unknown), so queries never miss a key."""
    for key in CONTEXT_KEYS:
        event_dict.setdefault(key, None)
    return event_dict


def drop_unknown_context(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Console output: hide run identifiers that are unknown instead of printing `None`."""
    for key in CONTEXT_KEYS:
        if event_dict.get(key, "") is None:
            del event_dict[key]
    return event_dict


def add_error_type(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Name the exception class (`error_type`) of a line logged with `exc_info`."""
    exc_info = event_dict.get("exc_info")
    exc: BaseException | None = None
    if isinstance(exc_info, BaseException):
        exc = exc_info
    elif isinstance(exc_info, tuple) and len(exc_info) == 3:
        exc = exc_info[1]
    elif exc_info is True:
        exc = sys.exc_info()[1]
    if exc is not None:
        event_dict.setdefault("error_type", type(exc).__name__)
    return event_dict


def redact_event(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask e-mails, card numbers, SSNs, phone numbers and secrets in every value of a line."""
    return redact_mapping(event_dict)


def _drop_color_message(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    # uvicorn duplicates its message with ANSI colours in `color_message`.
    event_dict.pop("color_message", None)
    return event_dict


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        add_runnable_context,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def build_formatter(fmt: LogFormat) -> structlog.stdlib.ProcessorFormatter:
    """Return the stdlib formatter that renders both structlog and plain `logging` records.

    Args:
        fmt: `json` (one object per line) or `console` (human-readable).
    """
    renderer: Processor
    tail: list[Processor]
    if fmt == "json":
        tail = [add_context_defaults]
        renderer = structlog.processors.JSONRenderer(default=str)
    else:
        tail = [drop_unknown_context]
        renderer = structlog.dev.ConsoleRenderer(
            colors=False, exception_formatter=structlog.dev.plain_traceback
        )
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*_shared_processors(), structlog.stdlib.ExtraAdder()],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _drop_color_message,
            add_error_type,
            # Exceptions become strings *before* masking, so tracebacks are masked too.
            structlog.processors.format_exc_info,
            redact_event,
            *tail,
            renderer,
        ],
    )


def resolve_format(settings: Settings | None = None, fmt: LogFormat | None = None) -> LogFormat:
    """Pick the output format: explicit, then `STEWARD_LOG_FORMAT`, then by environment.

    Args:
        settings: where the setting and the environment come from; None reads them now.
        fmt: an explicit format, which wins.
    """
    if fmt is not None:
        return fmt
    settings = settings if settings is not None else Settings()
    if settings.log_format is not None:
        return settings.log_format
    return "json" if settings.env == "production" else "console"


def configure_logging(
    settings: Settings | None = None,
    *,
    fmt: LogFormat | None = None,
    level: int | str | None = None,
    stream: TextIO | None = None,
    force: bool = False,
) -> logging.Handler:
    """Route structlog and stdlib logging through one handler with one renderer.

    Safe to call again (tests, CLI then server): the handler installed by a previous call is
    replaced; other handlers on the root logger (pytest's capture) are kept unless `force`.

    Args:
        settings: source of the log settings and of `env` (production means JSON lines);
            None reads them from the environment when an argument leaves one open.
        fmt: `json` or `console`; default `STEWARD_LOG_FORMAT`, else by environment.
        level: root level; default `STEWARD_LOG_LEVEL`, else INFO.
        stream: where lines go; default stderr.
        force: also remove every other handler of the root logger.

    Returns:
        The installed handler (tests remove it with `reset_logging`).
    """
    if settings is None and (fmt is None or level is None):
        settings = Settings()
    resolved_level: int | str = "INFO"
    if level is not None:
        resolved_level = level
    elif settings is not None:
        resolved_level = settings.log_level
    if isinstance(resolved_level, str):
        resolved_level = logging.getLevelName(resolved_level.upper())
        if not isinstance(resolved_level, int):
            resolved_level = logging.INFO

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *_shared_processors(),
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.processors.StackInfoRenderer(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(build_formatter(resolve_format(settings, fmt)))
    setattr(handler, _HANDLER_MARK, True)

    root = logging.getLogger()
    for existing in list(root.handlers):
        if force or getattr(existing, _HANDLER_MARK, False):
            root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(resolved_level)
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, resolved_level))
    return handler


def reset_logging() -> None:
    """Remove the handler `configure_logging` installed and restore structlog's defaults."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, _HANDLER_MARK, False):
            root.removeHandler(existing)
    structlog.reset_defaults()


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """Return a structlog logger (events are key-value pairs: `log.info("x", k=v)`)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger


def bind_log_context(**ids: Any) -> dict[str, Any]:
    """Bind identifiers (e.g. `run_id=...`) to every log line of the current task.

    None values are skipped. Returns the tokens for `unbind_log_context`.
    """
    values = {key: str(value) for key, value in ids.items() if value is not None}
    return dict(structlog.contextvars.bind_contextvars(**values))


def unbind_log_context(tokens: Mapping[str, Any]) -> None:
    """Restore the log context that was in place before `bind_log_context`."""
    structlog.contextvars.reset_contextvars(**tokens)


def current_request_id() -> str | None:
    """The request id bound by the HTTP middleware in this task (store it with a queued run)."""
    value = structlog.contextvars.get_contextvars().get("request_id")
    return str(value) if value is not None else None


@contextmanager
def log_context(**ids: Any) -> Iterator[None]:
    """Bind identifiers to every log line inside the `with` block, then restore."""
    tokens = bind_log_context(**ids)
    try:
        yield
    finally:
        unbind_log_context(tokens)


__all__ = [
    "CONTEXT_KEYS",
    "LogFormat",
    "add_runnable_context",
    "bind_log_context",
    "build_formatter",
    "configure_logging",
    "current_request_id",
    "get_logger",
    "log_context",
    "reset_logging",
    "unbind_log_context",
]
