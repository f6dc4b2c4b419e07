"""Traces from a real `steward serve` process: OTLP/HTTP spans and LangSmith runs, to a receiver.

One server, configured only by the standard variables (`OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `LANGSMITH_TRACING`, `LANGSMITH_ENDPOINT`, ...),
runs one background refund through the HTTP API (`langgraph-sdk`: thread create, run create,
join) and is stopped with SIGTERM. The batch processor is told (`OTEL_BSP_*`) to export only
when the process flushes it, so spans that arrive at all arrived through the shutdown flush.
The receiver then holds:
- the request span `POST /threads/{thread_id}/runs` that created the run;
- the run span `invoke_agent agent`, run by the worker from the queue (the `runs` row carries
  the request's traceparent): child of the request span and linked to it;
- one `node <name>` span per node executed, children of the run span; the `chat <model>` spans
  under `node agent`, the `execute_tool issue_refund` span under `node run_tools`;
- LangSmith runs for the workflow (root `agent` with the run's ids as metadata, one child per
  node, the model calls).
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from langgraph_sdk import get_client
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from core.db.migrate import migrate
from core.db.pool import open_pool
from core.domain.seed import seed_demo_orders
from core.settings import Settings
from mock_llm.process import MockLLM
from server.keys import KeyStore
from tests.fixtures_db import create_database, drop_database
from tests.serve_helpers import service_env, start_serve, until, wait_exit
from tests.trace_capture import Capture, attrs, capturing, langsmith_runs, otlp_spans

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

MODEL = "gpt-4o-mini"
REFUND_INPUT: Any = {
    "messages": [
        {"role": "user", "content": "Please refund $120 on order LS-10011, it arrived damaged."}
    ]
}
NODES_OF_A_SMALL_REFUND = (
    "input_filter",
    "retrieve",
    "agent",
    "guard_tools",
    "run_tools",
    "validate",
    "finalize",
)
"""A refund under the approval threshold: no `approval` interrupt, one tool call."""
CREATE_ROUTE = "POST /threads/{thread_id}/runs"


@dataclass
class Traced:
    """What one traced server process did and sent."""

    thread_id: str
    run_id: str
    final: dict[str, Any]
    posts_before_shutdown: int
    exit_code: int | None
    capture: Capture
    log: str


@pytest.fixture(scope="module", name="capture")
def fx_capture() -> Iterator[Capture]:
    with capturing() as capture:
        yield capture


@pytest.fixture(scope="module", name="tracing_db")
def fx_tracing_db(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url, prefix="steward_tracing")
    try:
        yield url
    finally:
        drop_database(pg_server_url, url)


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="traced")
async def fx_traced(
    tracing_db: str,
    steward_home: Path,
    mock_llm: MockLLM,
    capture: Capture,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Traced]:
    """Start a traced server, run one refund through the API, SIGTERM it; what it exported."""
    settings = Settings(database_url=tracing_db, db_pool_min=1, db_pool_max=2)
    async with open_pool(tracing_db, settings) as pool:
        await migrate(pool, tracing_db)
        await seed_demo_orders(pool)
        key = await KeyStore(pool).create("alice", "acme", "user")
    env = service_env(
        DATABASE_URL=tracing_db,
        STEWARD_HOME=str(steward_home),
        OPENAI_BASE_URL=mock_llm.base_url,
        OPENAI_API_KEY="test-key",
        STEWARD_LLM_TIMEOUT_S="120",
        STEWARD_SHUTDOWN_DELAY_S="0",
        OTEL_EXPORTER_OTLP_ENDPOINT=capture.url,
        OTEL_SERVICE_NAME="steward-e2e",
        OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=test,service.namespace=steward",
        # Export only on the process's flush: nothing sends on a timer or a full batch.
        OTEL_BSP_SCHEDULE_DELAY="3600000",
        OTEL_BSP_MAX_QUEUE_SIZE="100000",
        OTEL_BSP_MAX_EXPORT_BATCH_SIZE="100000",
        LANGSMITH_TRACING="true",
        LANGSMITH_ENDPOINT=capture.url,
        LANGSMITH_API_KEY="lsv2_test_not_a_real_key_0000000000",
        LANGSMITH_PROJECT="steward-e2e",
    )
    for stale in ("OTEL_SDK_DISABLED", "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        env.pop(stale, None)
    log_path = tmp_path_factory.mktemp("traced") / "server.log"
    served = start_serve(env, log_path)
    try:
        alice = get_client(url=served.url, api_key=key)
        thread_id: str = (await alice.threads.create())["thread_id"]
        run = await alice.runs.create(thread_id, "agent", input=REFUND_INPUT)
        final: dict[str, Any] = dict(await alice.runs.join(thread_id, run["run_id"]))
        await until(
            lambda: alice.runs.get(thread_id, run["run_id"]),
            lambda r: r["status"] == "success",
            within=120,
            what="the run finished",
        )
        posts_before = len(capture.bodies("/v1/traces"))
        served.process.send_signal(signal.SIGTERM)
        code = await wait_exit(served.process, within=120)
    finally:
        served.stop()
    yield Traced(
        thread_id=thread_id,
        run_id=str(run["run_id"]),
        final=final,
        posts_before_shutdown=posts_before,
        exit_code=code,
        capture=capture,
        log=served.log(),
    )


def hex_id(raw: bytes) -> str:
    return raw.hex()


def test_the_refund_ran_and_the_server_exited_cleanly_on_sigterm(traced: Traced) -> None:
    [action] = traced.final["response"]["actions"]
    assert action["name"] == "issue_refund" and action["status"] == "executed", traced.final
    assert traced.exit_code == 0, traced.log[-4000:]


def test_spans_are_exported_by_the_shutdown_flush(traced: Traced) -> None:
    # With the batch processor's timer and batch limit out of reach, only the flush on exit
    # sends: none before SIGTERM, all of them after.
    assert traced.posts_before_shutdown == 0
    spans, _ = otlp_spans(traced.capture)
    assert any(attrs(s).get("steward.run_id") == traced.run_id for s in spans), traced.log[-4000:]


def test_resource_comes_from_the_standard_variables(traced: Traced) -> None:
    _, resource = otlp_spans(traced.capture)
    assert resource["service.name"] == "steward-e2e"
    assert resource["deployment.environment.name"] == "test"
    assert resource["service.namespace"] == "steward"


def test_request_run_node_llm_and_tool_spans_are_named_and_linked(traced: Traced) -> None:
    spans, _ = otlp_spans(traced.capture)
    by_id = {s.span_id: s for s in spans}

    def children(parent: Any, name: str | None = None) -> list[Any]:
        return [
            s
            for s in spans
            if s.parent_span_id == parent.span_id and (name is None or s.name == name)
        ]

    # The request that created the run (the HTTP server span).
    creates = [
        s
        for s in spans
        if s.name == CREATE_ROUTE
        and attrs(s).get("url.path") == f"/threads/{traced.thread_id}/runs"
    ]
    [create] = creates
    assert create.kind == Span.SPAN_KIND_SERVER
    assert attrs(create)["http.response.status_code"] == 200

    # The run, executed by the worker from the queue.
    [run] = [
        s
        for s in spans
        if s.name == "invoke_agent agent" and attrs(s).get("steward.run_id") == traced.run_id
    ]
    run_attrs = attrs(run)
    assert run_attrs["gen_ai.conversation.id"] == traced.thread_id
    assert run_attrs["steward.tenant_id"] == "acme" and run_attrs["steward.user_id"] == "alice"
    assert run_attrs["steward.outcome"] == "success"
    assert run_attrs["steward.request_id"] == attrs(create)["steward.request_id"]
    assert run.trace_id == create.trace_id
    assert run.parent_span_id == create.span_id, "the run span is a child of its request"
    [link] = run.links
    assert (hex_id(link.trace_id), hex_id(link.span_id)) == (
        hex_id(create.trace_id),
        hex_id(create.span_id),
    )
    assert attrs(link)["steward.link"] == "run.created_by"

    # The nodes under the run, the model calls and the tool call under the nodes.
    nodes = children(run)
    names = [s.name for s in nodes]
    assert all(name.startswith("node ") for name in names), names
    assert {f"node {n}" for n in NODES_OF_A_SMALL_REFUND} <= set(names), names
    agent_nodes = [s for s in nodes if s.name == "node agent"]
    chats = [s for s in spans if s.name == f"chat {MODEL}" and s.trace_id == run.trace_id]
    assert len(agent_nodes) >= 2, names  # decide on the tool, then answer
    assert len(chats) == len(agent_nodes)
    assert {by_id[c.parent_span_id].name for c in chats} == {"node agent"}
    assert all(c.kind == Span.SPAN_KIND_CLIENT for c in chats)
    assert all(attrs(c)["gen_ai.usage.input_tokens"] > 0 for c in chats)
    [run_tools] = [s for s in nodes if s.name == "node run_tools"]
    [tool] = children(run_tools, "execute_tool issue_refund")
    assert attrs(tool)["steward.tool.status"] == "executed"

    subtree, frontier = {run.span_id}, [run]
    while frontier:
        frontier = [s for parent in frontier for s in children(parent)]
        subtree.update(s.span_id for s in frontier)
    in_trace = [s for s in spans if s.trace_id == run.trace_id]
    assert len(subtree) == 1 + len(nodes) + len(chats) + 1, "nothing else under the run"
    print(
        f"spans per run: {len(subtree)} from the run span down, {len(in_trace)} in its trace "
        f"({len(nodes)} nodes, {len(chats)} chat, 1 tool)"
    )


def test_langsmith_receives_the_workflow_runs_from_the_server(traced: Traced) -> None:
    runs, _ = langsmith_runs(traced.capture)
    roots = [
        r
        for r in runs.values()
        if r.get("name") == "agent"
        and not r.get("parent_run_id")
        and (r.get("extra") or {}).get("metadata", {}).get("run_id") == traced.run_id
    ]
    assert len(roots) == 1, sorted(str(r.get("name")) for r in runs.values())
    [root] = roots
    metadata = root["extra"]["metadata"]
    assert metadata["thread_id"] == traced.thread_id
    assert (metadata["tenant_id"], metadata["user_id"]) == ("acme", "alice")
    assert root.get("session_name") == "steward-e2e"
    assert root.get("end_time"), "the root run's end reached LangSmith"
    trace_id = root.get("trace_id") or root["id"]
    in_trace = [r for r in runs.values() if (r.get("trace_id") or r.get("id")) == trace_id]
    names = {r.get("name") for r in in_trace}
    assert set(NODES_OF_A_SMALL_REFUND) | {"ChatOpenAI"} <= names, names
    chat = next(r for r in in_trace if r.get("name") == "ChatOpenAI")
    assert chat["extra"]["metadata"]["run_id"] == traced.run_id
