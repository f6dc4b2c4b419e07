"""Trace export for the life of a process: configured at start, flushed and stopped at exit.

`steward serve`, `steward chat` and `steward eval` run inside `exporting_traces()`:
OpenTelemetry from the standard `OTEL_*` variables (nothing is installed without an endpoint)
and LangSmith from the `LANGSMITH_*` ones (its client built here, off the event loop). On the
way out (a normal exit, Ctrl-C, or SIGTERM after the drain) the spans still queued in the batch
processor and the runs still queued in the LangSmith client are sent before the process ends.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry.sdk.trace import TracerProvider

from core.observability.langsmith import flush_langsmith, warm_up_langsmith
from core.observability.tracing import configure_tracing, shutdown_tracing, traces_protocol

log = logging.getLogger("steward.tracing")

FLUSH_TIMEOUT_S = 10.0
"""How long the exit waits for each exporter to confirm."""


@contextmanager
def exporting_traces(*, service_name: str | None = None) -> Iterator[TracerProvider | None]:
    """Configure trace export from the environment; flush and shut it down on exit.

    Args:
        service_name: `service.name` when neither `OTEL_SERVICE_NAME` nor
            `OTEL_RESOURCE_ATTRIBUTES` names one (default `steward`).

    Yields:
        The OpenTelemetry provider, or None when no OTLP endpoint is configured.
    """
    provider = configure_tracing(service_name=service_name)
    if provider is not None:
        log.info("OpenTelemetry traces exported over OTLP (%s)", traces_protocol())
    langsmith = warm_up_langsmith()  # before any event loop runs: it reads files
    try:
        yield provider
    finally:
        if provider is not None and not shutdown_tracing(int(FLUSH_TIMEOUT_S * 1000)):
            log.warning("not every span was exported within %.0f s", FLUSH_TIMEOUT_S)
        if langsmith:
            flush_langsmith(FLUSH_TIMEOUT_S)


__all__ = ["FLUSH_TIMEOUT_S", "exporting_traces"]
