"""OpenTelemetry traces: HTTP request -> run -> node -> LLM / tool call, exported over OTLP/HTTP.

Tracing is on when `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set
and `OTEL_SDK_DISABLED` is not `true`; the other standard variables (`OTEL_SERVICE_NAME`,
`OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_TRACES_SAMPLER`, ...) are honoured
by the SDK. With tracing off, `get_tracer()` returns None and callers create no spans at all.
Every long-running command configures it at start and flushes it on exit
(`core.observability.lifecycle.exporting_traces`).

Span names follow the OpenTelemetry conventions: `GET /threads/{thread_id}` (HTTP),
`invoke_agent agent` (a run), `node <name>` (a graph node), `chat <model>` (an LLM call),
`execute_tool <tool>` (a tool call).
"""

from __future__ import annotations

import logging
import os
import threading

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

log = logging.getLogger(__name__)

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


def tracing_requested(endpoint: str | None = None) -> bool:
    """Whether the environment (or an explicit endpoint) asks for OTLP trace export.

    Off without an endpoint, with `OTEL_SDK_DISABLED=true`, or when `OTEL_TRACES_EXPORTER`
    names no `otlp` exporter (e.g. `none`).
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = os.environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporters and "otlp" not in {name.strip() for name in exporters.split(",")}:
        return False
    return bool(endpoint) or otlp_traces_endpoint() is not None


def traces_protocol() -> str:
    """The OTLP protocol for traces: the traces variable, the general one, else http/protobuf."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = os.environ.get(name, "").strip().lower()
        if value:
            return value
    return "http/protobuf"


def otlp_exporter(endpoint: str | None = None) -> SpanExporter:
    """The OTLP span exporter the protocol variables ask for, configured by the SDK itself.

    Without `endpoint` the exporter is built with no arguments, so the SDK reads the endpoint,
    `OTEL_EXPORTER_OTLP_*HEADERS`, `*TIMEOUT`, `*COMPRESSION` and `*CERTIFICATE` variables as the
    specification says. `grpc` uses the gRPC exporter; `http/json`, which the Python SDK does
    not implement, falls back to `http/protobuf` with a warning.
    """
    protocol = traces_protocol()
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcSpanExporter,
        )

        return GrpcSpanExporter(endpoint=endpoint) if endpoint else GrpcSpanExporter()
    if protocol != "http/protobuf":
        log.warning("OTLP protocol %r is not supported here; using http/protobuf", protocol)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    if endpoint:
        return OTLPSpanExporter(endpoint=otlp_traces_endpoint(endpoint))
    return OTLPSpanExporter()


def service_resource(service_name: str | None = None) -> Resource:
    """The resource: `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME` (the SDK reads them).

    An explicit `service_name` wins; with neither variable naming the service it is `steward`
    rather than the SDK's `unknown_service`.
    """
    resource = Resource.create({"service.name": service_name} if service_name else {})
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    return resource


def configure_tracing(
    *,
    endpoint: str | None = None,
    exporter: SpanExporter | None = None,
    service_name: str | None = None,
    set_global: bool = True,
) -> TracerProvider | None:
    """Install a tracer provider exporting over OTLP when an endpoint is configured.

    The sampler is the SDK's (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the batch
    processor reads `OTEL_BSP_*`. Calling it again replaces the provider used by Steward's
    spans (the previous one is shut down, flushing its spans); the global OpenTelemetry
    provider can be set once per process.

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
    if exporter is None:
        if not tracing_requested(endpoint):
            return None
        exporter = otlp_exporter(endpoint)
    provider = TracerProvider(resource=service_resource(service_name))
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


def shutdown_tracing(timeout_ms: int = 10_000) -> bool:
    """Flush and stop Steward's provider (process exit, tests); tracing is off afterwards.

    Returns:
        Whether every finished span was exported within `timeout_ms` (True with no provider).
    """
    global _provider, _tracer
    with _lock:
        provider, _provider, _tracer = _provider, None, None
    if provider is None:
        return True
    flushed = provider.force_flush(timeout_ms)
    provider.shutdown()
    return flushed


def current_traceparent() -> str | None:
    """Return the W3C `traceparent` of the current span (store it with a queued run)."""
    if not trace.get_current_span().get_span_context().is_valid:
        return None  # tracing off, or no span: nothing to build
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
    "otlp_exporter",
    "otlp_traces_endpoint",
    "service_resource",
    "shutdown_tracing",
    "traces_protocol",
    "tracing_requested",
]
