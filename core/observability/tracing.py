"""OpenTelemetry traces: HTTP request -> run -> node -> LLM / tool call, exported over OTLP/HTTP.

Tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set
and `OTEL_SDK_DISABLED` is not `true`; the other standard variables (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`, ...) are honoured
by the SDK. With tracing off, `get_tracer()` returns None and callers create no spans at all.

Span names follow the OpenTelemetry conventions: `GET /threads/{thread_id}` (HTTP),
`invoke_agent agent` (a run), `node <name>` (a graph node), `chat <model>` (an LLM call),
`execute_tool <tool>` (a tool call).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

TRACER_NAME = "steward"
DEFAULT_SERVICE_NAME = "steward"

_lock = threading.Lock()
_provider: TracerProvider | None = None
_tracer: Tracer | None = None
_global_set = False
_propagator = TraceContextTextMapPropagator()


def otlp_traces_endpoint(base: str | None = None) -> str | None:
    """Return the OTLP/HTTP traces URL from an explicit base or the standard variables.

    `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is used as is; a base endpoint (the argument or
    `OTEL_EXPORTER_OTLP_ENDPOINT`) gets `/v1/traces` appended, as the specification says.
    """
    if base:
        return f"{base.rstrip('/')}/v1/traces"
    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if traces:
        return traces
    general = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    return f"{general.rstrip('/')}/v1/traces" if general else None


def configure_tracing(
    *,
    endpoint: str | None = None,
    exporter: SpanExporter | None = None,
    service_name: str | None = None,
    set_global: bool = True,
) -> TracerProvider | None:
    """Install a tracer provider exporting over OTLP/HTTP when an endpoint is configured.

    Calling it again replaces the provider used by Steward's spans (the previous one is shut
    down, flushing its spans); the global OpenTelemetry provider can be set once per process.

    Args:
        endpoint: OTLP base URL (e.g. `http://collector:4318`); default from the environment.
        exporter: use this exporter instead of OTLP (tests, benchmarks).
        service_name: `service.name`; default `OTEL_SERVICE_NAME`, else `steward`.
        set_global: also make it OpenTelemetry's global provider (so other instrumentation,
            e.g. httpx, joins the same traces); the first call that asks wins.

    Returns:
        The provider, or None when tracing is off (no endpoint or `OTEL_SDK_DISABLED=true`).
    """
    global _provider, _tracer, _global_set
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true" and exporter is None:
        return None
    if exporter is None:
        url = otlp_traces_endpoint(endpoint)
        if url is None:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter(endpoint=url)
    attributes: dict[str, Any] = {}
    if service_name or not os.environ.get("OTEL_SERVICE_NAME"):
        attributes["service.name"] = service_name or DEFAULT_SERVICE_NAME
    provider = TracerProvider(resource=Resource.create(attributes))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    with _lock:
        previous, _provider = _provider, provider
        _tracer = provider.get_tracer(TRACER_NAME)
        if set_global and not _global_set:
            trace.set_tracer_provider(provider)
            _global_set = True
    if previous is not None and previous is not trace.get_tracer_provider():
        previous.shutdown()
    return provider


def get_tracer() -> Tracer | None:
    """Return Steward's tracer, or None when tracing is off.

    Falls back to a global SDK provider installed by someone else (e.g. `opentelemetry-
    instrument`), so spans join it.
    """
    if _tracer is not None:
        return _tracer
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        return provider.get_tracer(TRACER_NAME)
    return None


def flush_tracing(timeout_ms: int = 5000) -> bool:
    """Export every finished span now; True when the exporter confirmed in time."""
    provider = _provider
    return provider.force_flush(timeout_ms) if provider is not None else True


def shutdown_tracing() -> None:
    """Flush and stop Steward's provider (process exit, tests); tracing is off afterwards."""
    global _provider, _tracer
    with _lock:
        provider, _provider, _tracer = _provider, None, None
    if provider is not None:
        provider.shutdown()


def current_traceparent() -> str | None:
    """Return the W3C `traceparent` of the current span (store it with a queued run)."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def context_from_traceparent(traceparent: str | None) -> otel_context.Context:
    """Return an OpenTelemetry context whose parent is `traceparent` (current one if None)."""
    if not traceparent:
        return otel_context.get_current()
    return _propagator.extract({"traceparent": traceparent})


__all__ = [
    "configure_tracing",
    "context_from_traceparent",
    "current_traceparent",
    "flush_tracing",
    "get_tracer",
    "otlp_traces_endpoint",
    "shutdown_tracing",
]
