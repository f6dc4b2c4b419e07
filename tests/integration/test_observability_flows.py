"""Observability end to end: real graph turns (Postgres, mock LLM over HTTP), real exporters.

- OTLP/HTTP spans and LangSmith runs reach a capture server on 127.0.0.1 with the expected
  names, parentage (HTTP request -> run -> node -> LLM / tool) and run metadata;
- `/metrics` exposes runs, nodes, LLM calls, tokens, cost, tools, approvals, guardrail blocks,
  HTTP latency and pool usage after a refund flow;
- no log line (JSON, DEBUG) contains the raw PII of the user's message.
"""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from langchain_core.runnables import RunnableConfig
from litestar import Litestar, Request, post
from litestar.params import JSONBody, PathParameter
from prometheus_client.parser import text_string_to_metric_families

from core.domain.orders import PgOrderStore
from core.observability import (
    configure_logging,
    configure_tracing,
    current_traceparent,
    flush_tracing,
    observe_pool,
    refresh_approvals_pending,
    shutdown_tracing,
)
from core.observability.langsmith import flush_langsmith, reset_langsmith
from core.observability.logging import reset_logging
from graph.builder import DURABILITY
from graph.observer import instrument_run_config
from graph.runtime import Runtime
from server.observability import ObservabilityMiddleware, metrics_endpoint, request_id_of
from tests.run_context import context_for
from tests.trace_capture import Capture, attrs, capturing, langsmith_runs, otlp_spans

pytestmark = pytest.mark.integration

MODEL = "gpt-4o-mini"
EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
NODES = (
    "input_filter",
    "retrieve",
    "agent",
    "guard_tools",
    "approval",
    "run_tools",
    "validate",
    "finalize",
)


# ------------------------------------------------------------------------- capture server


@pytest.fixture(name="capture")
def fx_capture() -> Iterator[Capture]:
    """A tiny HTTP server on loopback that records every POST and answers 200."""
    with capturing() as capture:
        yield capture


@pytest.fixture(name="exporters")
def fx_exporters(capture: Capture, monkeypatch: pytest.MonkeyPatch) -> Iterator[Capture]:
    """OTLP and LangSmith both pointed at the capture server by their standard variables."""
    import langsmith.utils

    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", capture.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "steward-test")
    monkeypatch.setenv("LANGSMITH_TRACING", "true")
    monkeypatch.setenv("LANGSMITH_ENDPOINT", capture.url)
    monkeypatch.setenv("LANGSMITH_API_KEY", "lsv2_test_not_a_real_key_0000000000")
    monkeypatch.setenv("LANGSMITH_PROJECT", "steward-tests")
    # langsmith's overloads hide the lru_cache wrapper's cache_clear.
    langsmith.utils.get_env_var.cache_clear()  # type: ignore[attr-defined]
    assert configure_tracing(set_global=False) is not None
    try:
        yield capture
    finally:
        shutdown_tracing()
        reset_langsmith()
        monkeypatch.undo()
        langsmith.utils.get_env_var.cache_clear()  # type: ignore[attr-defined]
        langsmith.utils.get_tracer_project.cache_clear()


# ---------------------------------------------------------------- a tiny service around runs


async def record_decisions(
    runtime: Runtime, thread_id: str, user: str, decisions: list[dict[str, Any]]
) -> Any:
    """What the service does before a resume runs: record the decision in the queue."""
    from core.identity import Principal
    from server.runs.in_process import decide_in_process

    approver = Principal(key_id="k", user_id=user, tenant_id="acme", role="approver")
    return await decide_in_process(
        runtime.pool,
        runtime.graph,
        thread_id=uuid.UUID(thread_id),
        principal=approver,
        requester="alice",
        decisions=decisions,
    )


async def approve_as_mia(runtime: Runtime, thread_id: str) -> Any:
    return await record_decisions(runtime, thread_id, "mia", [{"type": "approve"}])


def make_app(runtime: Runtime, queued: dict[str, str]) -> Litestar:
    """Two run routes in the shape of the real service, wired as the integration notes say."""

    def base_config(thread_id: str, user: str) -> RunnableConfig:
        return {"configurable": {"thread_id": thread_id, "user_id": user, "tenant_id": "acme"}}

    @post("/threads/{thread_id:str}/runs/wait", status_code=200)
    async def run_wait(
        thread_id: Annotated[str, PathParameter()],
        data: JSONBody[dict[str, Any]],
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        from langgraph.types import Command

        config = instrument_run_config(
            base_config(thread_id, data.get("user", "alice")),
            run_id=data["run_id"],
            request_id=request_id_of(request),
        )
        graph_input: Any = {"messages": [{"role": "user", "content": data.get("text")}]}
        if "resume" in data:
            graph_input = Command(
                resume=await record_decisions(
                    runtime, thread_id, data.get("user", "alice"), data["resume"]["decisions"]
                )
            )
        out = await runtime.graph.ainvoke(
            graph_input, config, context=context_for(config), durability=DURABILITY
        )
        response = out.get("response") or {}
        return {
            "interrupted": "__interrupt__" in out,
            "actions": response.get("actions", []),
            "refusal": response.get("refusal"),
        }

    @post("/threads/{thread_id:str}/runs", status_code=202)
    async def run_create(
        thread_id: Annotated[str, PathParameter()],
        data: JSONBody[dict[str, Any]],
        request: Request[Any, Any, Any],
    ) -> dict[str, Any]:
        # A background run: the worker executes it later, in another task.
        queued["traceparent"] = current_traceparent() or ""
        queued["request_id"] = request_id_of(request) or ""
        return {"run_id": data["run_id"]}

    return Litestar(
        route_handlers=[run_wait, run_create, metrics_endpoint],
        middleware=[ObservabilityMiddleware()],
        logging_config=None,
    )


def client_for(app: Litestar) -> httpx.AsyncClient:
    """In-process ASGI client on the test's own event loop (the runtime's pool lives there)."""
    # httpx types the ASGI app more narrowly than Litestar declares its __call__.
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=transport, base_url="http://test")


# ----------------------------------------------------------------------------- decoding


def metric_values(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def delta(after: dict[Any, float], before: dict[Any, float], name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


# ---------------------------------------------------------------------------------- tests


async def test_otlp_and_langsmith_deliver_a_refund_flow_to_a_capture_server(
    runtime: Runtime, orders: PgOrderStore, mock_llm_clean: None, exporters: Capture
) -> None:
    thread = str(uuid.uuid4())
    run_1, run_2 = f"run-{uuid.uuid4().hex[:8]}", f"run-{uuid.uuid4().hex[:8]}"
    queued: dict[str, str] = {}
    async with client_for(make_app(runtime, queued)) as client:
        first = await client.post(
            f"/threads/{thread}/runs/wait",
            headers={"x-request-id": "req-wait-1"},
            json={"run_id": run_1, "text": f"Refund $700 on LS-10007 please. I am {EMAIL}."},
        )
        assert first.status_code == 200 and first.json()["interrupted"] is True
        created = await client.post(
            f"/threads/{thread}/runs",
            json={"run_id": run_2},
            headers={"x-request-id": "req-create-2"},
        )
        assert created.status_code == 202
    # The "worker": another task, parented by the traceparent stored with the queued run.
    from langgraph.types import Command

    config = instrument_run_config(
        {"configurable": {"thread_id": thread, "user_id": "mia", "tenant_id": "acme"}},
        run_id=run_2,
        request_id=queued["request_id"],
        traceparent=queued["traceparent"],
    )
    resume = await approve_as_mia(runtime, thread)
    out = await runtime.graph.ainvoke(
        Command(resume=resume), config, context=context_for(config), durability=DURABILITY
    )
    assert out["response"]["actions"][0]["status"] == "executed"

    assert flush_tracing()
    flush_langsmith()

    # ---- OpenTelemetry (OTLP/HTTP protobuf)
    spans, resource = otlp_spans(exporters)
    assert resource["service.name"] == "steward-test"
    by_id = {span.span_id: span for span in spans}
    names = sorted(span.name for span in spans)

    def parent(span: Any) -> Any:
        return by_id.get(span.parent_span_id)

    runs = {attrs(s)["steward.run_id"]: s for s in spans if s.name == "invoke_agent agent"}
    assert set(runs) == {run_1, run_2}, names
    for run_id, user in ((run_1, "alice"), (run_2, "mia")):
        a = attrs(runs[run_id])
        assert (a["steward.thread_id"], a["steward.tenant_id"], a["steward.user_id"]) == (
            thread,
            "acme",
            user,
        )
        assert a["gen_ai.conversation.id"] == thread
    assert attrs(runs[run_1])["steward.outcome"] == "interrupted"
    assert attrs(runs[run_2])["steward.outcome"] == "success"
    assert attrs(runs[run_1])["steward.request_id"] == "req-wait-1"
    assert attrs(runs[run_2])["steward.request_id"] == "req-create-2"

    # HTTP request -> run: inline (runs/wait) and through a stored traceparent (queued run)
    wait_span = parent(runs[run_1])
    assert wait_span is not None and wait_span.name == "POST /threads/{thread_id}/runs/wait"
    assert attrs(wait_span)["steward.request_id"] == "req-wait-1"
    create_span = parent(runs[run_2])
    assert create_span is not None and create_span.name == "POST /threads/{thread_id}/runs"
    assert create_span.trace_id == runs[run_2].trace_id

    # run -> node -> chat / execute_tool
    for node in NODES:
        node_spans = [s for s in spans if s.name == f"node {node}"]
        assert node_spans, f"no span for node {node} in {names}"
        assert all(
            parent(s) is not None and parent(s).name == "invoke_agent agent" for s in node_spans
        )
    chats = [s for s in spans if s.name == f"chat {MODEL}"]
    assert len(chats) == 2 and all(parent(s).name == "node agent" for s in chats)
    assert all(attrs(s)["gen_ai.usage.input_tokens"] > 0 for s in chats)
    assert all(attrs(s)["gen_ai.request.model"] == MODEL for s in chats)
    [tool] = [s for s in spans if s.name == "execute_tool issue_refund"]
    assert parent(tool).name == "node run_tools"
    assert attrs(tool)["steward.tool.status"] == "executed"
    assert attrs(tool)["steward.run_id"] == run_2

    # ---- LangSmith (multipart ingestion)
    ls_runs, raw = langsmith_runs(exporters)
    roots = [r for r in ls_runs.values() if r.get("name") == "agent" and not r.get("parent_run_id")]
    metadata = {r["extra"]["metadata"]["run_id"]: r["extra"]["metadata"] for r in roots}
    assert set(metadata) == {run_1, run_2}
    for run_id, user in ((run_1, "alice"), (run_2, "mia")):
        assert metadata[run_id]["thread_id"] == thread
        assert metadata[run_id]["tenant_id"] == "acme"
        assert metadata[run_id]["user_id"] == user
    assert all(r.get("session_name") == "steward-tests" for r in roots)
    run_names = {r.get("name") for r in ls_runs.values()}
    assert set(NODES) | {"ChatOpenAI"} <= run_names, run_names
    child = next(r for r in ls_runs.values() if r.get("name") == "ChatOpenAI")
    assert child["extra"]["metadata"]["thread_id"] == thread
    # The LangSmith client masks PII before sending (the input reached it, masked).
    assert EMAIL.encode() not in raw
    assert b"[EMAIL]" in raw


async def test_metrics_endpoint_exposes_the_series_after_a_refund_flow(
    runtime: Runtime, orders: PgOrderStore, mock_llm_clean: None
) -> None:
    stop_pool = observe_pool(runtime.pool)
    thread = str(uuid.uuid4())
    queued: dict[str, str] = {}
    try:
        async with client_for(make_app(runtime, queued)) as client:
            before = metric_values((await client.get("/metrics")).text)
            small = await client.post(
                f"/threads/{uuid.uuid4()}/runs/wait",
                json={
                    "run_id": "m-1",
                    "text": "Please refund $120 on order LS-10011, it arrived damaged.",
                },
            )
            assert small.json()["actions"][0]["status"] == "executed"
            held = await client.post(
                f"/threads/{thread}/runs/wait",
                json={"run_id": "m-2", "text": "Refund $700 on LS-10007 please."},
            )
            assert held.json()["interrupted"] is True
            approved = await client.post(
                f"/threads/{thread}/runs/wait",
                json={
                    "run_id": "m-3",
                    "user": "mia",
                    "resume": {"decisions": [{"type": "approve"}]},
                },
            )
            assert approved.json()["actions"][0]["status"] == "executed"
            blocked = await client.post(
                f"/threads/{uuid.uuid4()}/runs/wait", json={"run_id": "m-4", "text": "   "}
            )
            assert blocked.json()["refusal"] == "empty_input"
            response = await client.get("/metrics")
    finally:
        stop_pool()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    after = metric_values(text)

    def d(name: str, **labels: str) -> float:
        return delta(after, before, name, **labels)

    # runs by outcome
    assert d("steward_runs_total", outcome="success") == 2
    assert d("steward_runs_total", outcome="interrupted") == 1
    assert d("steward_runs_total", outcome="refused") == 1
    assert d("steward_run_duration_seconds_count", outcome="success") == 2
    # node latency
    for node in NODES:
        assert d("steward_node_duration_seconds_count", node=node, status="ok") >= 1, node
    assert d("steward_node_duration_seconds_count", node="approval", status="interrupted") == 1
    # LLM calls, latency, tokens and cost by model
    assert d("steward_llm_calls_total", model=MODEL, status="ok") == 4
    assert d("steward_llm_call_duration_seconds_count", model=MODEL) == 4
    assert d("steward_llm_tokens_total", model=MODEL, kind="input") > 1000
    assert d("steward_llm_tokens_total", model=MODEL, kind="output") > 10
    assert d("steward_llm_cost_usd_total", model=MODEL) > 0
    assert "# TYPE steward_llm_errors_total counter" in text
    # tools, approvals, guardrails
    assert d("steward_tool_calls_total", tool="issue_refund", outcome="executed") == 2
    assert d("steward_approval_requests_total", tool="issue_refund") == 1
    assert d("steward_approval_decisions_total", decision="approve") == 1
    assert d("steward_guardrail_blocks_total", stage="input", reason="empty_input") == 1
    assert "# TYPE steward_approvals_pending gauge" in text
    assert "# TYPE steward_approval_decision_seconds histogram" in text
    assert d("steward_retrieval_hits_count") == 2  # the two new turns; not resume, not refusal
    # HTTP latency by route template
    assert (
        d(
            "steward_http_request_duration_seconds_count",
            method="POST",
            route="/threads/{thread_id}/runs/wait",
            status="200",
        )
        == 4
    )
    assert (
        d(
            "steward_http_request_duration_seconds_count",
            method="GET",
            route="/metrics",
            status="200",
        )
        == 1
    )
    # checkpoint pool usage (psycopg_pool get_stats)
    pool = runtime.pool.name
    assert after[("steward_db_pool_pool_max", frozenset({("pool", pool)}))] == runtime.pool.max_size
    assert after[("steward_db_pool_requests_total", frozenset({("pool", pool)}))] > 0
    assert ("steward_db_pool_pool_available", frozenset({("pool", pool)})) in after


async def test_pending_approvals_gauge_counts_the_approvals_table(
    scratch_database_url: str,
) -> None:
    from core.db.pool import open_pool
    from core.observability.metrics import REGISTRY
    from core.settings import Settings

    settings = Settings(DATABASE_URL=scratch_database_url, STEWARD_DB_POOL_MIN=1)  # type: ignore[call-arg]
    async with open_pool(scratch_database_url, settings) as pool:
        assert await refresh_approvals_pending(pool) is None, "no table yet: left alone"
        async with pool.connection() as conn:
            await conn.execute("CREATE TABLE approvals (status text NOT NULL)")
            await conn.execute(
                "INSERT INTO approvals VALUES ('pending'), ('pending'), ('approved'), ('rejected')"
            )
        assert await refresh_approvals_pending(pool) == 2
    assert REGISTRY.get_sample_value("steward_approvals_pending") == 2


async def test_no_log_line_contains_the_raw_pii_of_the_input(
    runtime: Runtime, orders: PgOrderStore, mock_llm_clean: None
) -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging(fmt="json", level="DEBUG", stream=stream)
    message = (
        f"Hi, this is Jane ({EMAIL}, card {CARD}). Please refund $120 on order "
        f"LS-10011, it arrived damaged."
    )
    try:
        config = instrument_run_config(
            {
                "configurable": {
                    "thread_id": str(uuid.uuid4()),
                    "user_id": "jane",
                    "tenant_id": "acme",
                }
            },
            run_id="pii-run",
        )
        out = await runtime.graph.ainvoke(
            {"messages": [{"role": "user", "content": message}]},
            config,
            context=context_for(config),
            durability=DURABILITY,
        )
        # What a library (or a careless debug line) might do with the same text:
        logging.getLogger("openai._base_client").debug(
            "Request options: %s", {"json_data": {"messages": [{"content": message}]}}
        )
        logging.getLogger("nodes.agent").info("user context", extra={"user_message": message})
    finally:
        reset_logging()
        root.setLevel(level)
    assert out["response"]["actions"][0]["status"] == "executed", "the turn really ran"

    text = stream.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) > 5
    for raw in (EMAIL, CARD, CARD.replace(" ", "")):
        assert raw not in text, f"raw PII {raw!r} in the logs"
    [started] = [line for line in lines if line["event"] == "run started"]
    assert "[EMAIL]" in started["input_preview"] and "[CARD]" in started["input_preview"]
    run_lines = [line for line in lines if line["logger"] == "steward.run"]
    assert all(line["run_id"] == "pii-run" and line["tenant_id"] == "acme" for line in run_lines)
    assert {line["event"] for line in run_lines} >= {
        "run started",
        "retrieval hits",
        "llm call",
        "tool call decided",
        "tool call executed",
        "run finished",
    }
