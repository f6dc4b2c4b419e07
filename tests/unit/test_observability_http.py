"""The Litestar middleware (request id, latency by route, access log, server span) and /metrics."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Annotated, Any

import pytest
from litestar import Litestar, Request, get
from litestar.exceptions import NotFoundException
from litestar.params import PathParameter
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.observability import metrics as m
from core.observability.logging import configure_logging, reset_logging
from server.observability import ObservabilityMiddleware, metrics_endpoint, request_id_of

ROUTE = "/things/{thing_id}"


@get("/things/{thing_id:str}", sync_to_thread=False)
def thing(
    thing_id: Annotated[str, PathParameter()], request: Request[Any, Any, Any]
) -> dict[str, Any]:
    logging.getLogger("server.routes").info("inside handler")
    if thing_id == "missing":
        raise NotFoundException("no such thing")
    return {"id": thing_id, "request_id": request_id_of(request)}


@get("/crash", sync_to_thread=False)
def crash() -> None:
    raise RuntimeError("boom")


def count(route: str, status: str) -> float:
    return (
        m.REGISTRY.get_sample_value(
            "steward_http_request_duration_seconds_count",
            {"method": "GET", "route": route, "status": status},
        )
        or 0.0
    )


@pytest.fixture(name="spans")
def fx_spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture(name="logs")
def fx_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging(fmt="json", level="INFO", stream=stream)
    yield stream
    reset_logging()
    root.setLevel(level)


def app_with(spans: InMemorySpanExporter) -> Litestar:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    # logging_config=None: Litestar's default would replace the root logger's handlers.
    return Litestar(
        route_handlers=[thing, crash, metrics_endpoint],
        logging_config=None,
        middleware=[ObservabilityMiddleware(tracer=provider.get_tracer("test"))],
    )


async def test_request_id_is_echoed_bound_to_logs_and_given_to_handlers(
    spans: InMemorySpanExporter, logs: io.StringIO
) -> None:
    async with AsyncTestClient(app_with(spans)) as client:
        given = await client.get("/things/a", headers={"x-request-id": "req-abc.1"})
        generated = await client.get("/things/b")
        hostile = await client.get("/things/c", headers={"x-request-id": "<script>" * 40})
    assert given.headers["x-request-id"] == "req-abc.1"
    assert given.json()["request_id"] == "req-abc.1"
    new_id = generated.headers["x-request-id"]
    assert len(new_id) == 32 and generated.json()["request_id"] == new_id
    assert len(hostile.headers["x-request-id"]) == 32, "a malformed id is replaced"
    lines = [json.loads(line) for line in logs.getvalue().splitlines()]
    inside = [line for line in lines if line["event"] == "inside handler"]
    assert [line["request_id"] for line in inside][:2] == ["req-abc.1", new_id]
    access = [line for line in lines if line["event"] == "http request"]
    assert access[0]["route"] == ROUTE and access[0]["status"] == 200
    assert access[0]["request_id"] == "req-abc.1" and access[0]["duration_ms"] >= 0


async def test_latency_is_recorded_by_route_template_and_status(
    spans: InMemorySpanExporter,
) -> None:
    ok, not_found, failed = count(ROUTE, "200"), count(ROUTE, "404"), count("/crash", "500")
    async with AsyncTestClient(app_with(spans)) as client:
        for thing_id in ("1", "2", "3"):
            assert (await client.get(f"/things/{thing_id}")).status_code == 200
        assert (await client.get("/things/missing")).status_code == 404
        crashed = await client.get("/crash")
    assert crashed.status_code == 500 and crashed.headers["x-request-id"]
    assert count(ROUTE, "200") == ok + 3, "one series for every id: the template, not the path"
    assert count(ROUTE, "404") == not_found + 1
    assert count("/crash", "500") == failed + 1
    assert (
        m.REGISTRY.get_sample_value(
            "steward_http_request_duration_seconds_count",
            {"method": "GET", "route": "/things/1", "status": "200"},
        )
        is None
    )
    assert m.REGISTRY.get_sample_value("steward_http_requests_in_flight") == 0


async def test_server_span_joins_the_callers_trace(spans: InMemorySpanExporter) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = "00f067aa0ba902b7"
    async with AsyncTestClient(app_with(spans)) as client:
        await client.get(
            "/things/x",
            headers={"traceparent": f"00-{trace_id}-{parent}-01", "x-request-id": "r-1"},
        )
        await client.get("/crash")
    first, second = spans.get_finished_spans()
    assert first.name == f"GET {ROUTE}" and first.kind.name == "SERVER"
    assert format(first.context.trace_id, "032x") == trace_id
    assert first.parent is not None and format(first.parent.span_id, "016x") == parent
    # ReadableSpan.attributes is Optional in OpenTelemetry's types; finished SDK spans have them.
    assert first.attributes["http.response.status_code"] == 200  # type: ignore[index]
    assert first.attributes["steward.request_id"] == "r-1"  # type: ignore[index]
    assert second.name == "GET /crash" and second.status.status_code.name == "ERROR"


async def test_metrics_route_serves_the_registry(spans: InMemorySpanExporter) -> None:
    async with AsyncTestClient(app_with(spans)) as client:
        await client.get("/things/1")
        response = await client.get("/metrics")
        openmetrics = await client.get(
            "/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert f'route="{ROUTE}"' in response.text
    assert "# TYPE steward_http_request_duration_seconds histogram" in response.text
    assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
    assert openmetrics.text.rstrip().endswith("# EOF")
