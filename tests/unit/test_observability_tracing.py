"""OpenTelemetry set-up: endpoint resolution, on/off switches, traceparent propagation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.observability import tracing
from tests.trace_capture import capturing, otlp_spans


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in (
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        "OTEL_SDK_DISABLED",
        "OTEL_SERVICE_NAME",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_TRACES_EXPORTER",
        "OTEL_TRACES_SAMPLER",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    ):
        monkeypatch.delenv(name, raising=False)
    yield
    tracing.shutdown_tracing()


def test_endpoint_resolution_follows_the_specification(monkeypatch: pytest.MonkeyPatch) -> None:
    assert tracing.otlp_traces_endpoint() is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")
    assert tracing.otlp_traces_endpoint() == "http://collector:4318/v1/traces"
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://other:4318/custom")
    assert tracing.otlp_traces_endpoint() == "http://other:4318/custom"
    assert tracing.otlp_traces_endpoint("http://x:1") == "http://x:1/v1/traces"


def test_tracing_is_off_without_an_endpoint_or_when_disabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert tracing.configure_tracing(set_global=False) is None
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert tracing.configure_tracing(set_global=False) is None
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        assert tracing.get_tracer() is None


def test_configured_provider_names_the_service_and_exports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = tracing.configure_tracing(exporter=exporter, set_global=False)
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "steward"
    tracer = tracing.get_tracer()
    assert tracer is not None
    tracer.start_span("x").end()
    assert tracing.flush_tracing()
    assert [s.name for s in exporter.get_finished_spans()] == ["x"]

    monkeypatch.setenv("OTEL_SERVICE_NAME", "steward-eu")
    provider = tracing.configure_tracing(exporter=InMemorySpanExporter(), set_global=False)
    assert provider is not None
    assert provider.resource.attributes["service.name"] == "steward-eu"


def test_traceparent_round_trip_links_a_run_under_the_request() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("t")
    with tracer.start_as_current_span("request") as request_span:
        traceparent = tracing.current_traceparent()
    assert traceparent is not None
    assert traceparent.split("-")[1] == format(request_span.get_span_context().trace_id, "032x")
    # Later, in another task: the run span's parent is the request span.
    tracer.start_span("run", context=tracing.context_from_traceparent(traceparent)).end()
    run = next(s for s in exporter.get_finished_spans() if s.name == "run")
    assert run.parent is not None
    assert run.parent.span_id == request_span.get_span_context().span_id
    assert tracing.current_traceparent() is None, "no span is current outside the block"


def test_otel_traces_exporter_none_turns_otlp_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
    assert tracing.tracing_requested()
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "none")
    assert not tracing.tracing_requested()
    assert tracing.configure_tracing(set_global=False) is None
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "console,otlp")
    assert tracing.tracing_requested()


def test_the_sdk_reads_the_exporter_resource_and_sampler_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcSpanExporter,
    )
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    with capturing() as capture:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", f"{capture.url}/custom")
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=acme")
        monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "service.name=from-attrs,team=agents")
        provider = tracing.configure_tracing(set_global=False)
        assert provider is not None
        tracer = tracing.get_tracer()
        assert tracer is not None
        tracer.start_span("x").end()
        assert tracing.shutdown_tracing()
        [(headers, _)] = capture.bodies("/custom")
        assert headers.get("x-tenant") == "acme"
        spans, resource = otlp_spans(capture, "/custom")
    assert [s.name for s in spans] == ["x"]
    assert resource["service.name"] == "from-attrs" and resource["team"] == "agents"

    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    provider = tracing.configure_tracing(set_global=False)
    assert provider is not None and provider.sampler is ALWAYS_OFF

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
    grpc_exporter = tracing.otlp_exporter()
    assert isinstance(grpc_exporter, GrpcSpanExporter)
    grpc_exporter.shutdown()
