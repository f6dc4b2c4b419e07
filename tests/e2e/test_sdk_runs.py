"""The runs routes through the real `langgraph_sdk` client against `steward serve`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
import warnings
from typing import TYPE_CHECKING, Any, Literal, cast

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
)
from langgraph_sdk.schema import CancelAction

from core.db.pool import DbPool
from core.domain.orders import PgOrderStore
from core.settings import Settings
from mock_llm.process import MockLLM

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e

QUESTION: Any = {"messages": [{"role": "user", "content": "How long is the return window?"}]}
SMALL_REFUND: Any = {
    "messages": [{"role": "user", "content": "Please refund $20 on order LS-10017, it broke."}]
}
BIG_REFUND: Any = {"messages": [{"role": "user", "content": "Refund $600 on LS-10017 please."}]}
APPROVE: Any = {"resume": {"decisions": [{"type": "approve"}]}}
FAIL_RUN: Any = {
    "kind": "status",
    "status": 500,
    "count": Settings.model_fields["llm_max_attempts"].default,
}
"""Fails every attempt of one model call (the server keeps the default retry count)."""
SLOW_CALL_S = 4.0
"""The server's model timeout is 5 s; a delayed call still succeeds."""


@pytest.fixture(name="tenant")
def fx_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture(name="alice")
async def fx_alice(server: RunningServer, tenant: str) -> LangGraphClient:
    return server.client(await server.keys("alice", tenant, "user"))


@pytest.fixture(name="mock")
async def fx_mock(mock_llm_clean: MockLLM) -> MockLLM:
    return mock_llm_clean


async def start_slow_run(
    client: LangGraphClient, mock: MockLLM, tid: str, calls: int = 1, **kwargs: Any
) -> dict[str, Any]:
    """A background run whose model calls take 4 s each; returns once it is running."""
    await mock.add_faults([{"kind": "timeout", "delay_s": SLOW_CALL_S, "count": calls}])
    text = SMALL_REFUND if calls > 1 else QUESTION
    before = len(await mock.requests())
    run: dict[str, Any] = dict(await client.runs.create(tid, "agent", input=text, **kwargs))
    deadline = time.monotonic() + 60  # the first run of a server loads the embedding model
    while len(await mock.requests()) == before:
        assert time.monotonic() < deadline, "the slow run never reached the model"
        await asyncio.sleep(0.05)
    assert (await client.runs.get(tid, run["run_id"]))["status"] == "running"
    return run


async def refunds_for(pool: DbPool, thread_id: str) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT amount_cents, approved_by FROM refunds WHERE thread_id = %s", (thread_id,)
        )
        return list(await cur.fetchall())


# --------------------------------------------------------------------------- stream / wait


async def test_stream_speaks_the_sdk_protocol(alice: LangGraphClient, mock: MockLLM) -> None:
    tid = (await alice.threads.create())["thread_id"]
    created: list[Any] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parts = [
            p
            async for p in alice.runs.stream(
                tid,
                "agent",
                input=QUESTION,
                stream_mode=["values", "updates", "messages-tuple", "custom"],
                on_run_created=created.append,
            )
        ]
    assert parts[0].event == "metadata"
    run_id = parts[0].data["run_id"]
    assert parts[0].data["attempt"] == 1
    assert created and created[0]["run_id"] == run_id and created[0]["thread_id"] == tid
    events = {p.event for p in parts[1:]}
    assert events <= {"values", "updates", "messages", "custom"}
    assert {"values", "updates", "messages"} <= events
    message, meta = next(p.data for p in parts if p.event == "messages")
    assert message["type"] == "AIMessageChunk" and "langgraph_node" in meta
    assert all(p.id is None for p in parts), "ids only for resumable runs"
    # Seen in CI: a `messages` event of the last step can follow that step's `values` event
    # (the executor forwards graph.astream's order as is), so check the last `values` event.
    final = [p for p in parts if p.event == "values"][-1]
    assert final.data["response"]["sources"]
    assert not [w for w in caught if "econnect" in str(w.message)], [str(w.message) for w in caught]
    assert (await alice.runs.get(tid, run_id))["status"] == "success"
    thread = await alice.threads.get(tid)
    assert thread["status"] == "idle"
    assert (thread["metadata"] or {})["graph_id"] == "agent"
    found = await alice.threads.search(metadata={"graph_id": "agent"})
    assert tid in {t["thread_id"] for t in found}


async def test_wait_background_join_get_list(
    server: RunningServer, alice: LangGraphClient, mock: MockLLM, tenant: str
) -> None:
    tid = (await alice.threads.create())["thread_id"]
    out = await alice.runs.wait(tid, "agent", input=QUESTION)
    assert isinstance(out, dict) and out["response"]["sources"]
    assert [m["type"] for m in out["messages"]] == ["human", "ai"]

    run = await alice.runs.create(
        tid, "agent", input=QUESTION, stream_resumable=True, metadata={"source": "test"}
    )
    assert run["status"] == "pending" and run["thread_id"] == tid
    assert run["metadata"] == {"source": "test"}
    assert run["multitask_strategy"] == "enqueue"
    joined = await alice.runs.join(tid, run["run_id"])
    assert joined["response"]["sources"]
    assert len(joined["messages"]) == 4
    got = await alice.runs.get(tid, run["run_id"])
    assert got["status"] == "success"
    listed = await alice.runs.list(tid)
    assert listed[0]["run_id"] == run["run_id"] and len(listed) == 2
    assert [r["run_id"] for r in await alice.runs.list(tid, status="success", limit=1)] == [
        run["run_id"]
    ]

    replay = [p async for p in alice.runs.join_stream(tid, run["run_id"], last_event_id="-1")]
    assert replay[0].event == "metadata" and replay[0].data["run_id"] == run["run_id"]
    assert [p.id for p in replay] == [str(i) for i in range(len(replay))]
    assert replay[-1].event == "values" and replay[-1].data["response"]["sources"]
    tail = [p async for p in alice.runs.join_stream(tid, run["run_id"], last_event_id="1")]
    assert [p.id for p in tail] == [p.id for p in replay[2:]]

    with pytest.raises(NotFoundError):
        await alice.runs.get(tid, str(uuid.uuid4()))
    mallory = server.client(await server.keys("mallory", f"other-{tenant}", "admin"))
    with pytest.raises(NotFoundError):
        await mallory.runs.list(tid)
    with pytest.raises(NotFoundError):
        await mallory.runs.get(tid, run["run_id"])
    bob = server.client(await server.keys("bob", tenant, "user"))
    # join and wait go through the SDK's reconnecting request: plain httpx errors.
    with pytest.raises(httpx.HTTPStatusError) as info:
        await bob.runs.join(tid, run["run_id"])
    assert info.value.response.status_code == 404
    with pytest.raises(httpx.HTTPStatusError) as info:
        await bob.runs.wait(tid, "agent", input=QUESTION)
    assert info.value.response.status_code == 404
    with pytest.raises(NotFoundError):
        await bob.runs.create(tid, "agent", input=QUESTION)

    await alice.runs.delete(tid, run["run_id"])
    with pytest.raises(NotFoundError):
        await alice.runs.get(tid, run["run_id"])


async def test_bad_bodies_are_refused_clearly(alice: LangGraphClient) -> None:
    tid = (await alice.threads.create())["thread_id"]
    with pytest.raises(UnprocessableEntityError) as info:
        await alice.runs.create(tid, "agent", input=QUESTION, webhook="http://example.com/h")
    assert "webhook" in info.value.response.json()["detail"]
    with pytest.raises(UnprocessableEntityError):
        await alice.runs.create(tid, "agent", input=QUESTION, stream_mode=cast(Any, "tools"))
    with pytest.raises(UnprocessableEntityError):
        await alice.runs.create(tid, "agent", input=QUESTION, interrupt_before=["nope"])
    with pytest.raises(UnprocessableEntityError):
        await alice.runs.create(
            tid, "agent", input=QUESTION, config={"configurable": {"user_id": "admin"}}
        )
    with pytest.raises(NotFoundError):
        await alice.runs.create(tid, "other-graph", input=QUESTION)
    with pytest.raises(NotFoundError):
        await alice.runs.create(str(uuid.uuid4()), "agent", input=QUESTION)
    made = await alice.runs.create(
        str(uuid.uuid4()), "agent", input=QUESTION, if_not_exists="create"
    )
    assert (await alice.runs.join(made["thread_id"], made["run_id"]))["response"]


async def test_stateless_runs(alice: LangGraphClient, mock: MockLLM) -> None:
    out = await alice.runs.wait(None, "agent", input=QUESTION)
    assert isinstance(out, dict) and out["response"]["sources"]
    parts = [p async for p in alice.runs.stream(None, "agent", input=QUESTION)]
    assert parts[0].event == "metadata" and parts[-1].event == "values"


async def test_failed_run_reports_an_error_event_and_wait_error(
    alice: LangGraphClient, mock: MockLLM
) -> None:
    tid = (await alice.threads.create())["thread_id"]
    await mock.add_faults([FAIL_RUN])
    parts = [p async for p in alice.runs.stream(tid, "agent", input=QUESTION)]
    assert parts[-1].event == "error"
    assert parts[-1].data["error"] == "ProviderError" and parts[-1].data["message"]
    run_id = parts[0].data["run_id"]
    assert (await alice.runs.get(tid, run_id))["status"] == "error"
    assert (await alice.threads.get(tid))["status"] == "error"

    await mock.add_faults([FAIL_RUN])
    out = await alice.runs.wait(tid, "agent", input=QUESTION, raise_error=False)
    assert isinstance(out, dict)
    assert out["__error__"]["error"] == "ProviderError"
    await mock.add_faults([FAIL_RUN])
    with pytest.raises(Exception, match="ProviderError"):
        await alice.runs.wait(tid, "agent", input=QUESTION)


# --------------------------------------------------------------------------- multitask


async def test_multitask_reject(alice: LangGraphClient, mock: MockLLM) -> None:
    tid = (await alice.threads.create())["thread_id"]
    first = await start_slow_run(alice, mock, tid)
    with pytest.raises(ConflictError):
        await alice.runs.create(tid, "agent", input=QUESTION, multitask_strategy="reject")
    assert (await alice.threads.get(tid))["status"] == "busy"
    assert (await alice.runs.join(tid, first["run_id"]))["response"]
    assert len(await alice.runs.list(tid)) == 1


async def test_multitask_enqueue_runs_after_with_heartbeats(
    server: RunningServer, alice: LangGraphClient, mock: MockLLM, orders: PgOrderStore
) -> None:
    # `orders`: LS-10017 without earlier refunds or rejections, so the slow run's $20 refund
    # executes (after a rejection of the order it would wait for a person: the split rule).
    tid = (await alice.threads.create())["thread_id"]
    first = await start_slow_run(alice, mock, tid, calls=2)  # ~8 s
    api_key = alice.http.client.headers["x-api-key"]
    payload = {"input": QUESTION, "assistant_id": "agent"}
    async with httpx.AsyncClient(
        base_url=server.url, timeout=60, headers={"x-api-key": api_key}
    ) as http:

        async def stream() -> tuple[str, str]:
            async with http.stream("POST", f"/threads/{tid}/runs/stream", json=payload) as response:
                assert response.headers["content-type"].startswith("text/event-stream")
                location = response.headers["location"]
                assert response.headers["content-location"] == location.removesuffix("/stream")
                run_id = location.split("/")[-2]
                assert (await alice.runs.get(tid, run_id))["status"] == "pending"
                return run_id, (await response.aread()).decode()

        async def wait() -> tuple[str, str]:
            await asyncio.sleep(0.5)  # queued after the stream's run
            async with http.stream("POST", f"/threads/{tid}/runs/wait", json=payload) as response:
                assert response.headers["location"].endswith("/join")
                run_id = response.headers["content-location"].split("/")[-1]
                return run_id, (await response.aread()).decode()

        (second_id, body), (third_id, result) = await asyncio.gather(stream(), wait())
    assert body.startswith("event: metadata\r\ndata: {")
    assert ": heartbeat\r\n\r\n" in body, "a queued stream stays alive"
    assert body.rstrip().split("\r\n")[-2].startswith("event: values")
    assert result.startswith("\n"), "a queued wait sends whitespace while it waits"
    assert json.loads(result)["response"]["sources"]
    runs = {r["run_id"]: r for r in await alice.runs.list(tid)}
    assert [runs[i]["status"] for i in (first["run_id"], second_id, third_id)] == ["success"] * 3
    assert runs[first["run_id"]]["updated_at"] <= runs[second_id]["updated_at"]
    assert runs[second_id]["updated_at"] <= runs[third_id]["updated_at"]


async def test_multitask_interrupt(alice: LangGraphClient, mock: MockLLM) -> None:
    tid = (await alice.threads.create())["thread_id"]
    first = await start_slow_run(alice, mock, tid)
    second = await alice.runs.create(tid, "agent", input=QUESTION, multitask_strategy="interrupt")
    assert (await alice.runs.join(tid, second["run_id"]))["response"]
    assert (await alice.runs.get(tid, first["run_id"]))["status"] == "interrupted"
    assert (await alice.runs.get(tid, second["run_id"]))["status"] == "success"


async def test_multitask_rollback(alice: LangGraphClient, mock: MockLLM) -> None:
    tid = (await alice.threads.create())["thread_id"]
    first = await start_slow_run(alice, mock, tid)
    second = await alice.runs.create(tid, "agent", input=QUESTION, multitask_strategy="rollback")
    out = await alice.runs.join(tid, second["run_id"])
    assert [m["type"] for m in out["messages"]] == ["human", "ai"], "A's writes are gone"
    with pytest.raises(NotFoundError):
        await alice.runs.get(tid, first["run_id"])
    assert [r["run_id"] for r in await alice.runs.list(tid)] == [second["run_id"]]


async def test_cancel(alice: LangGraphClient, mock: MockLLM) -> None:
    tid = (await alice.threads.create())["thread_id"]
    run = await start_slow_run(alice, mock, tid)
    queued = await alice.runs.create(tid, "agent", input=QUESTION)
    await alice.runs.cancel_many(thread_id=tid, status="pending")
    await alice.runs.cancel(tid, run["run_id"], wait=True)
    assert (await alice.runs.get(tid, run["run_id"]))["status"] == "interrupted"
    assert (await alice.runs.get(tid, queued["run_id"]))["status"] == "interrupted"
    assert (await alice.threads.get(tid))["status"] != "busy"
    with pytest.raises(NotFoundError):  # as the LangGraph server: no active run by that id
        await alice.runs.cancel(tid, run["run_id"])


@pytest.mark.parametrize("action", ["interrupt", "rollback"])
async def test_a_run_cancelled_as_it_is_claimed_ends_at_once(
    alice: LangGraphClient, action: CancelAction
) -> None:
    """A cancel that lands between the claim and the start still ends the run, well inside
    its 30 s lease (it used to end only when the lease expired and another attempt ran)."""

    async def create_then_cancel() -> None:
        tid = (await alice.threads.create())["thread_id"]
        run = await alice.runs.create(tid, "agent", input=QUESTION)
        with contextlib.suppress(NotFoundError):  # it may have finished already
            await alice.runs.cancel(tid, run["run_id"], action=action)
        try:
            await asyncio.wait_for(alice.runs.join(tid, run["run_id"]), timeout=15)
        except httpx.HTTPStatusError as gone:
            assert gone.response.status_code == 404 and action == "rollback", gone
            # only a rollback deletes the run it cancels
        assert (await alice.threads.get(tid))["status"] != "busy"

    # Many at once: a busy worker widens the gap between a claim and the run's start.
    await asyncio.gather(*(create_then_cancel() for _ in range(30)))


async def test_a_runs_kwargs_are_what_the_client_sent(alice: LangGraphClient) -> None:
    """Who sent it, their role and the request's trace ids stay on the server."""
    tid = (await alice.threads.create())["thread_id"]
    run = await alice.runs.create(tid, "agent", input=QUESTION, stream_mode=["values"])
    for seen in (run, await alice.runs.get(tid, run["run_id"]), *await alice.runs.list(tid)):
        kwargs = cast("dict[str, Any]", seen)["kwargs"]  # the SDK's Run type omits it
        assert kwargs["input"] == QUESTION and kwargs["stream_mode"] == ["values"]
        leaked = {"role", "user_id", "requester_id", "traceparent", "request_id", "temporary"}
        assert not leaked & set(kwargs), kwargs
    await alice.runs.join(tid, run["run_id"])


# --------------------------------------------------------------------------- approvals


async def test_refund_over_threshold_needs_an_approver(
    server: RunningServer, alice: LangGraphClient, mock: MockLLM, tenant: str, db_pool: DbPool
) -> None:
    approver = server.client(await server.keys("mia", tenant, "approver"))
    tid = (await alice.threads.create())["thread_id"]
    out = await alice.runs.wait(tid, "agent", input=BIG_REFUND)
    assert isinstance(out, dict)
    [pending] = out["__interrupt__"]
    [request] = pending["value"]["action_requests"]
    assert request["name"] == "issue_refund" and request["args"]["order_id"] == "LS-10017"
    assert pending["id"]
    thread = await alice.threads.get(tid)
    assert thread["status"] == "interrupted" and thread["interrupts"]
    assert await refunds_for(db_pool, tid) == []

    with pytest.raises(PermissionDeniedError):
        await alice.runs.create(tid, "agent", command=APPROVE)
    with pytest.raises(httpx.HTTPStatusError) as info:
        await alice.runs.wait(tid, "agent", command=APPROVE)
    assert info.value.response.status_code == 403
    out = await approver.runs.wait(tid, "agent", command=APPROVE)
    assert isinstance(out, dict) and "__interrupt__" not in out
    assert out["response"]["actions"][0]["status"] == "executed"
    [refund] = await refunds_for(db_pool, tid)
    assert refund["amount_cents"] == 60000 and refund["approved_by"] == "mia"
    assert (await alice.threads.get(tid))["status"] == "idle"
    with pytest.raises(ConflictError):  # nothing left to resume
        await approver.runs.create(tid, "agent", command=APPROVE)
    assert len(await refunds_for(db_pool, tid)) == 1


def runs_by_outcome(metrics: str) -> dict[str, float]:
    """`steward_runs_total` by outcome, from the text /metrics serves."""
    counts: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith('steward_runs_total{outcome="'):
            labels, value = line.rsplit(" ", 1)
            counts[labels.split('"')[1]] = float(value)
    return counts


@pytest.mark.parametrize("durability", ["exit", "async", "sync"])
async def test_a_refund_run_counts_once_by_how_it_ended_whatever_its_durability(
    server: RunningServer,
    alice: LangGraphClient,
    db_pool: DbPool,
    orders: PgOrderStore,
    mock: MockLLM,
    durability: Literal["exit", "async", "sync"],
) -> None:
    """Under `exit`/`async` a refund run stops to save its checkpoint and goes on: no cancel."""
    async with httpx.AsyncClient(base_url=server.url) as http:
        before = runs_by_outcome((await http.get("/metrics")).text)
        tid = (await alice.threads.create())["thread_id"]
        out: Any = await alice.runs.wait(tid, "agent", input=SMALL_REFUND, durability=durability)
        after = runs_by_outcome((await http.get("/metrics")).text)
    assert out["response"] is not None, out
    assert out["response"]["actions"][0]["status"] == "executed"
    assert len(await refunds_for(db_pool, tid)) == 1
    grew = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    grew = {k: v for k, v in grew.items() if v}
    passes = {"success": 1.0} | ({} if durability == "sync" else {"checkpointed": 1.0})
    assert grew == passes


def agent_chat_ui_resume(thread_state: dict[str, Any], decision: dict[str, Any]) -> Any:
    """The body agent-chat-ui's `thread.submit({}, {command: {resume: {decisions}}})` posts.

    Plus a field no server knows yet: a newer SDK's addition must not break the call.
    """
    return {
        "input": {},
        "command": {"resume": {"decisions": [decision]}},
        "stream_mode": ["messages-tuple", "values", "custom"],
        "stream_subgraphs": True,
        "stream_resumable": True,
        "on_disconnect": "cancel",
        "checkpoint": thread_state["checkpoint"],
        "assistant_id": "agent",
        "a_field_from_a_newer_sdk": {"x": 1},
    }


@pytest.mark.parametrize(
    ("ask", "decision", "refunded"),
    [
        ("Refund $520 on LS-10009 please.", {"type": "approve"}, [52000]),
        (
            "Refund $600 on LS-10017 please.",
            {
                "type": "edit",
                "edited_action": {
                    "name": "issue_refund",
                    "args": {"order_id": "LS-10017", "amount": "510.00", "reason": "partial"},
                },
            },
            [51000],
        ),
        ("Refund $600 on LS-10017 please.", {"type": "reject", "message": "not eligible"}, []),
    ],
    ids=["approve", "edit", "reject"],
)
async def test_agent_chat_ui_resume_body_answers_the_approval(
    server: RunningServer,
    alice: LangGraphClient,
    tenant: str,
    db_pool: DbPool,
    ask: str,
    decision: dict[str, Any],
    refunded: list[int],
) -> None:
    """Its `input: {}` beside the `command` is ignored (the command wins), as the reference does."""
    tid = (await alice.threads.create())["thread_id"]
    question: Any = {"messages": [{"role": "user", "content": ask}]}
    out = await alice.runs.wait(tid, "agent", input=question)
    assert isinstance(out, dict) and out["__interrupt__"]
    approver_key = await server.keys("mia", tenant, "approver")
    async with httpx.AsyncClient(
        base_url=server.url, headers={"x-api-key": approver_key}, timeout=60
    ) as http:
        state = (await http.get(f"/threads/{tid}/state")).json()
        response = await http.post(
            f"/threads/{tid}/runs/stream", json=agent_chat_ui_resume(state, decision)
        )
        assert response.status_code == 200, response.text
        assert "event: values" in response.text and "event: error" not in response.text
        after = (await http.get(f"/threads/{tid}/state")).json()
    assert not after["interrupts"] and after["values"]["response"]
    assert [r["amount_cents"] for r in await refunds_for(db_pool, tid)] == refunded
    assert (await alice.threads.get(tid))["status"] == "idle"


async def test_deleting_a_busy_thread_cancels_its_runs_first(
    alice: LangGraphClient, mock: MockLLM, db_pool: DbPool
) -> None:
    """As the LangGraph server: 204, the runs are cancelled, the thread and its runs are gone."""
    tid = (await alice.threads.create())["thread_id"]
    running = await start_slow_run(alice, mock, tid)
    queued = await alice.runs.create(tid, "agent", input=QUESTION)
    assert (await alice.threads.get(tid))["status"] == "busy"
    await alice.threads.delete(tid)
    with pytest.raises(NotFoundError):
        await alice.threads.get(tid)
    async with db_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM runs WHERE run_id = ANY(%s)",
            ([uuid.UUID(running["run_id"]), uuid.UUID(queued["run_id"])],),
        )
        row = await cur.fetchone()
    assert row is not None and row["n"] == 0


async def test_an_interrupt_is_the_same_object_in_wait_stream_state_and_thread(
    alice: LangGraphClient,
) -> None:
    """`{value, id, response_schema}` everywhere a client meets the pending approval."""
    waited_tid = (await alice.threads.create())["thread_id"]
    out = await alice.runs.wait(waited_tid, "agent", input=BIG_REFUND)
    assert isinstance(out, dict)
    [from_wait] = out["__interrupt__"]
    assert from_wait["response_schema"]["properties"]["decisions"]

    tid = (await alice.threads.create())["thread_id"]
    streamed = [
        part.data
        async for part in alice.runs.stream(
            tid, "agent", input=BIG_REFUND, stream_mode=["updates", "values"]
        )
        if part.event in ("updates", "values") and "__interrupt__" in (part.data or {})
    ]
    assert len(streamed) == 2  # the `updates` and the final `values`
    [from_updates], [from_values] = (p["__interrupt__"] for p in streamed)
    [from_state] = (await alice.threads.get_state(tid))["interrupts"]
    [[from_thread]] = (await alice.threads.get(tid))["interrupts"].values()
    assert from_updates == from_values == from_state == from_thread
    assert set(from_state) == {"value", "id", "response_schema"}
    assert from_state["response_schema"] == from_wait["response_schema"]


async def test_join_stream_follows_the_threads_current_run_to_its_end(
    server: RunningServer, alice: LangGraphClient, mock: MockLLM, tenant: str
) -> None:
    """The SDKs' `threads.join_stream` / `joinStream`: the running run's events from now on."""
    tid = (await alice.threads.create())["thread_id"]
    assert [p async for p in await alice.threads.join_stream(tid)] == []  # no run yet: nothing
    run = await start_slow_run(alice, mock, tid)
    parts = [p async for p in await alice.threads.join_stream(tid)]
    # Joined after the run began: its `metadata` leads, without an id (a reconnect's
    # Last-Event-ID still names the last stored event).
    assert parts[0].event == "metadata" and parts[0].data["run_id"] == run["run_id"]
    assert parts[0].id is None and [p.event for p in parts].count("metadata") == 1
    assert parts and parts[-1].event == "values"
    assert parts[-1].data["response"]["answer"]
    assert (await alice.runs.get(tid, run["run_id"]))["status"] == "success"
    with pytest.raises(httpx.HTTPStatusError) as refused:
        _ = [p async for p in await alice.threads.join_stream(tid, stream_mode="lifecycle")]
    assert refused.value.response.status_code == 422
    outsider = server.client(await server.keys("eve", f"other-{tenant}", "user"))
    with pytest.raises(httpx.HTTPStatusError) as hidden:
        _ = [p async for p in await outsider.threads.join_stream(tid)]
    assert hidden.value.response.status_code == 404


async def test_create_batch_queues_stateless_runs_in_order(
    server: RunningServer, alice: LangGraphClient
) -> None:
    """`runs.create_batch`: every item validated first, the runs answered in order."""
    payloads: Any = [
        {"assistant_id": "agent", "input": QUESTION, "on_completion": "keep"},
        {"assistant_id": "agent", "input": QUESTION, "on_completion": "keep", "metadata": {"n": 2}},
    ]
    runs = await alice.runs.create_batch(payloads)
    assert [(r["metadata"] or {}).get("n") for r in runs] == [None, 2]
    assert len({r["thread_id"] for r in runs}) == 2  # each on its own temporary thread
    for run in runs:
        out = await alice.runs.join(str(run["thread_id"]), run["run_id"])
        assert isinstance(out, dict) and out["response"]["answer"]
    async with httpx.AsyncClient(
        base_url=server.url, headers={"x-api-key": await server.keys("alice", "t-batch")}
    ) as http:
        bad = await http.post("/runs/batch", json=[payloads[0], {"stream_mode": ["nonsense"]}])
        assert bad.status_code == 422 and bad.json()["detail"].startswith("item 1:")
        on_thread = await http.post("/runs/batch", json=[{**payloads[0], "thread_id": "t"}])
        assert on_thread.status_code == 422 and "stateless" in on_thread.json()["detail"]
        assert (await http.post("/runs/batch", json=[])).status_code == 422
        too_many = await http.post("/runs/batch", json=[payloads[0]] * 101)
        assert too_many.status_code == 422
