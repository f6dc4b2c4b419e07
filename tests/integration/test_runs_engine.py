"""The runs engine against real Postgres: claims, the one-running-run index, leases, cancel.

These tests use their own database (the e2e `server` fixture may be running a worker on the
session database, and it would claim these runs). They drive `RunService` and `RunWorker`
directly, without HTTP.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, TypedDict

import orjson
import psycopg
import pytest
import pytest_asyncio
from langgraph.graph import END, START, StateGraph
from psycopg import AsyncCursor
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from pydantic import SecretStr

from core.domain.seed import seed_demo_orders
from core.errors import Conflict, Forbidden, NotFound
from core.identity import Principal
from core.settings import Settings
from graph.checkpointer import make_checkpointer
from graph.runtime import Runtime
from mock_llm.process import MockLLM
from server import threads_repo
from server.runs import repo
from server.runs.events import EventHub
from server.runs.invocation import build_config, build_context
from server.runs.models import parse_run_create
from server.runs.service import RunService
from server.runs.worker import RunWorker, WorkerConfig
from steward.runtime import open_runtime
from tests.fixtures_db import create_database, drop_database

pytestmark = pytest.mark.integration

ALICE = Principal(key_id="k1", user_id="alice", tenant_id="t-engine", role="user")
BOB = Principal(key_id="k2", user_id="bob", tenant_id="t-engine", role="user")
MIA = Principal(key_id="k3", user_id="mia", tenant_id="t-engine", role="approver")
QUESTION = {"messages": [{"role": "user", "content": "How long is the return window?"}]}


@pytest.fixture(scope="module", name="engine_db")
def fx_engine_db(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url, prefix="steward_engine")
    try:
        yield url
    finally:
        drop_database(pg_server_url, url)


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="rt")
async def fx_runtime(
    engine_db: str, steward_home: Path, mock_llm: MockLLM
) -> AsyncIterator[Runtime]:
    settings = Settings(
        home=steward_home,
        database_url=engine_db,
        openai_base_url=mock_llm.base_url,
        openai_api_key=SecretStr("test-key"),
        llm_timeout_s=30.0,
        db_pool_min=4,
        db_pool_max=20,
    )
    async with open_runtime(settings) as runtime:
        await seed_demo_orders(runtime.pool)
        yield runtime


@pytest_asyncio.fixture(loop_scope="session", name="clean")
async def fx_clean(rt: Runtime, mock_llm: MockLLM) -> AsyncIterator[None]:
    """No leftover runs or mock faults before and after each test."""
    await mock_llm.clear_faults()
    await mock_llm.clear_requests()
    async with rt.pool.connection() as conn:
        await conn.execute("DELETE FROM runs")
    yield
    await mock_llm.clear_faults()
    async with rt.pool.connection() as conn:
        await conn.execute("DELETE FROM runs")


def quick_config(**overrides: Any) -> WorkerConfig:
    base: dict[str, Any] = {
        "slots": 4,
        "lease_s": 3.0,
        "poll_s": 0.2,
        "shutdown_grace_s": 2.0,
    }
    return WorkerConfig(**{**base, **overrides})


@pytest_asyncio.fixture(loop_scope="session", name="worker")
async def fx_worker(rt: Runtime, clean: None) -> AsyncIterator[RunWorker]:
    worker = RunWorker(rt, rt.deps.settings, config=quick_config())
    await worker.start()
    yield worker
    await worker.stop()


def body(stateless: bool = False, **fields: Any) -> Any:
    return parse_run_create({"assistant_id": "agent", **fields}, stateless=stateless)


async def new_thread(rt: Runtime, owner: Principal = ALICE) -> uuid.UUID:
    tid = uuid.uuid4()
    async with rt.pool.connection() as conn:
        await threads_repo.insert_thread(
            conn, tid, tenant_id=owner.tenant_id, owner_id=owner.user_id
        )
    return tid


async def status_of(rt: Runtime, run_id: str | uuid.UUID) -> str | None:
    async with rt.pool.connection() as conn:
        row = await repo.get_run(conn, uuid.UUID(str(run_id)))
    return None if row is None else str(row["status"])


async def thread_status(rt: Runtime, tid: uuid.UUID) -> str:
    async with rt.pool.connection() as conn:
        row = await threads_repo.get_thread(conn, tid)
    assert row is not None
    return str(row["status"])


async def wait_status(
    rt: Runtime, run_id: str, wanted: set[str | None], within: float = 30.0
) -> str | None:
    deadline = time.monotonic() + within
    while True:
        status = await status_of(rt, run_id)
        if status in wanted:
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"run {run_id} is {status}, expected one of {wanted}")
        await asyncio.sleep(0.1)


async def events_of(rt: Runtime, run_id: str) -> list[tuple[int, str, Any]]:
    async with rt.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT seq, event, data FROM run_events WHERE run_id = %s ORDER BY seq",
            (uuid.UUID(run_id),),
        )
        return [(r["seq"], r["event"], r["data"]) for r in await cur.fetchall()]


# --------------------------------------------------------------------------- claiming


async def test_claims_are_fifo_and_skip_threads_with_a_running_run(
    rt: Runtime, clean: None
) -> None:
    service = RunService(rt)
    thread_a, thread_b = await new_thread(rt), await new_thread(rt)
    a1 = await service.create(ALICE, thread_a, body(input=QUESTION))
    a2 = await service.create(ALICE, thread_a, body(input=QUESTION))
    b1 = await service.create(ALICE, thread_b, body(input=QUESTION))
    delayed = await service.create(
        ALICE, await new_thread(rt), body(input=QUESTION, after_seconds=60)
    )
    assert {a1.status, a2.status, b1.status, delayed.status} == {"pending"}
    claimed = []
    async with rt.pool.connection() as conn:
        for _ in range(3):
            row = await repo.claim_next(conn, "w-test", 30.0)
            claimed.append(None if row is None else str(row["run_id"]))
    # a2 waits behind a1 (same thread), the delayed run is not due yet.
    assert claimed == [a1.run_id, b1.run_id, None]
    async with rt.pool.connection() as conn:
        await conn.execute(
            "UPDATE runs SET status = 'success' WHERE run_id = %s", (uuid.UUID(a1.run_id),)
        )
        row = await repo.claim_next(conn, "w-test", 30.0)
    assert row is not None and str(row["run_id"]) == a2.run_id
    assert await thread_status(rt, thread_a) == "busy"


async def test_the_database_allows_one_running_run_per_thread(rt: Runtime, clean: None) -> None:
    service = RunService(rt)
    tid = await new_thread(rt)
    first = await service.create(ALICE, tid, body(input=QUESTION))
    second = await service.create(ALICE, tid, body(input=QUESTION))
    async with rt.pool.connection() as conn:
        await conn.execute(
            "UPDATE runs SET status = 'running' WHERE run_id = %s", (uuid.UUID(first.run_id),)
        )
        with pytest.raises(psycopg.errors.UniqueViolation):
            await conn.execute(
                "UPDATE runs SET status = 'running' WHERE run_id = %s", (uuid.UUID(second.run_id),)
            )


async def test_concurrent_claimers_never_run_two_runs_of_a_thread(rt: Runtime, clean: None) -> None:
    service = RunService(rt)
    threads = [await new_thread(rt) for _ in range(6)]
    for tid in threads:
        for _ in range(3):
            await service.create(ALICE, tid, body(input=QUESTION))

    async def claimer(i: int) -> list[str]:
        got = []
        for _ in range(6):
            try:
                async with rt.pool.connection() as conn:
                    row = await repo.claim_next(conn, f"w{i}", 30.0)
            except psycopg.errors.UniqueViolation:
                continue
            if row is not None:
                got.append(str(row["thread_id"]))
        return got

    results = await asyncio.gather(*(claimer(i) for i in range(8)))
    claimed = [t for got in results for t in got]
    assert sorted(claimed) == sorted(str(t) for t in threads)  # one per thread, all threads
    async with rt.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT thread_id, count(*) AS n FROM runs WHERE status = 'running'"
            " GROUP BY thread_id HAVING count(*) > 1"
        )
        assert await cur.fetchall() == []


async def test_create_applies_visibility_and_multitask_reject(rt: Runtime, clean: None) -> None:
    service = RunService(rt)
    tid = await new_thread(rt)
    await service.create(ALICE, tid, body(input=QUESTION))
    with pytest.raises(Conflict):
        await service.create(ALICE, tid, body(input=QUESTION, multitask_strategy="reject"))
    with pytest.raises(NotFound):  # another user's thread looks missing
        await service.create(BOB, tid, body(input=QUESTION))
    with pytest.raises(NotFound):
        await service.create(ALICE, uuid.uuid4(), body(input=QUESTION))
    created = await service.create(
        ALICE, uuid.uuid4(), body(input=QUESTION, if_not_exists="create")
    )
    assert created.status == "pending"
    with pytest.raises(Forbidden):
        await service.create(ALICE, tid, body(command={"goto": "run_tools"}))
    with pytest.raises(Conflict):  # nothing to resume on a fresh thread
        await service.create(ALICE, await new_thread(rt), body(command={"resume": 1}))
    async with rt.pool.connection() as conn:
        thread = await threads_repo.get_thread(conn, tid)
    assert thread is not None
    assert thread["metadata"]["graph_id"] == "agent"
    assert thread["status"] == "busy"


# --------------------------------------------------------------------------- execution


async def test_worker_runs_a_queue_in_order_and_records_events(
    rt: Runtime, worker: RunWorker
) -> None:
    service = RunService(rt)
    tid = await new_thread(rt)
    first = await service.create(
        ALICE, tid, body(input=QUESTION, stream_mode=["values", "updates"])
    )
    second = await service.create(ALICE, tid, body(input=QUESTION))
    assert await wait_status(rt, second.run_id, {"success", "error"}) == "success"
    assert await status_of(rt, first.run_id) == "success"
    runs = {r.run_id: r for r in await service.list_runs(ALICE, tid)}
    assert runs[first.run_id].updated_at <= runs[second.run_id].updated_at
    events = await events_of(rt, first.run_id)
    assert events[0][1] == "metadata" and events[0][2]["run_id"] == first.run_id
    assert [e[0] for e in events] == list(range(len(events)))
    names = {e[1] for e in events}
    assert names == {"metadata", "values", "updates"}
    assert await thread_status(rt, tid) == "idle"
    async with rt.pool.connection() as conn:
        out = await repo.get_output(conn, uuid.UUID(second.run_id))
    assert out is not None and out[1] is not None
    assert orjson.loads(out[1])["response"]["sources"]


async def test_expired_lease_is_taken_over_from_the_last_checkpoint(
    rt: Runtime, clean: None, mock_llm: MockLLM
) -> None:
    service = RunService(rt)
    tid = await new_thread(rt)
    run = await service.create(ALICE, tid, body(input=QUESTION))
    # A replica claims the run, checkpoints two steps, and dies (its lease runs out).
    async with rt.pool.connection() as conn:
        row = await repo.claim_next(conn, "dead-replica", 0.5)
    assert row is not None and str(row["run_id"]) == run.run_id
    config = build_config(dict(row), rt.deps.settings.recursion_limit)
    async for _ in rt.graph.astream(
        QUESTION,
        config,
        context=build_context(dict(row)),
        durability="sync",
        interrupt_after=["retrieve"],
    ):
        pass
    state = await rt.graph.aget_state({"configurable": {"thread_id": str(tid)}})
    assert state.next == ("agent",)
    assert await mock_llm.requests() == []

    worker = RunWorker(rt, rt.deps.settings, config=quick_config(lease_s=1.5))
    await worker.start()
    try:
        assert await wait_status(rt, run.run_id, {"success", "error"}) == "success"
    finally:
        await worker.stop()
    async with rt.pool.connection() as conn:
        final = await repo.get_run(conn, uuid.UUID(run.run_id))
    assert final is not None and final["attempt"] == 2 and final["worker_id"] == worker.worker_id
    state = await rt.graph.aget_state({"configurable": {"thread_id": str(tid)}})
    humans = [m for m in state.values["messages"] if m.type == "human"]
    assert len(humans) == 1, "the input was not applied a second time"
    assert state.values["response"]["sources"]
    assert len(await mock_llm.requests()) == 1, "only the unfinished step ran again"
    metadata = [e for e in await events_of(rt, run.run_id) if e[1] == "metadata"]
    assert [m[2]["attempt"] for m in metadata] == [1, 2]


async def test_a_run_lost_too_often_fails(rt: Runtime, clean: None) -> None:
    service = RunService(rt)
    tid = await new_thread(rt)
    run = await service.create(ALICE, tid, body(input=QUESTION))
    async with rt.pool.connection() as conn:
        await conn.execute(
            "UPDATE runs SET status = 'running', worker_id = 'gone', attempt = 3,"
            " lost_leases = 2, lease_expires_at = now() - interval '1 second'"
            " WHERE run_id = %s",
            (uuid.UUID(run.run_id),),
        )
    worker = RunWorker(rt, rt.deps.settings, config=quick_config())
    assert await worker.reap_expired() == 1
    assert await status_of(rt, run.run_id) == "error"
    assert await thread_status(rt, tid) == "error"


async def test_hand_overs_are_not_lost_leases(rt: Runtime, clean: None) -> None:
    """A run given back by drains or a lost database (attempt 5) is not failed for it."""
    service = RunService(rt)
    tid = await new_thread(rt)
    run = await service.create(ALICE, tid, body(input=QUESTION))
    async with rt.pool.connection() as conn:
        await conn.execute(
            "UPDATE runs SET status = 'running', worker_id = 'gone', attempt = 5,"
            " lease_expires_at = now() - interval '1 second' WHERE run_id = %s",
            (uuid.UUID(run.run_id),),
        )
    worker = RunWorker(rt, rt.deps.settings, config=quick_config())
    assert await worker.reap_expired() == 1
    async with rt.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, attempt, lost_leases FROM runs WHERE run_id = %s",
            (uuid.UUID(run.run_id),),
        )
        row = await cur.fetchone()
    assert row is not None
    assert (row["status"], row["attempt"], row["lost_leases"]) == ("pending", 6, 1)


def hang_first_end(worker: RunWorker, monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Make the first attempt to record a run's end block forever (a vanished peer).

    Returns the event set once that attempt is blocked.
    """
    real_commit = worker.executor.finisher._commit_finish
    stuck = asyncio.Event()

    async def hang_once(*args: Any, **kwargs: Any) -> str | None:
        if not stuck.is_set():
            stuck.set()
            await asyncio.Event().wait()
        return await real_commit(*args, **kwargs)

    monkeypatch.setattr(worker.executor.finisher, "_commit_finish", hang_once)
    return stuck


async def test_a_run_stuck_recording_its_end_is_not_renewed_forever(
    rt: Runtime, clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 9: a run whose end never gets recorded must not keep its lease (and thread).

    The first attempt to record the end blocks forever, as on a connection whose peer
    vanished. The worker stops renewing that lease, the reaper requeues the run, and the
    next attempt records it.
    """
    worker = RunWorker(rt, rt.deps.settings, config=quick_config(lease_s=2.0))
    stuck = hang_first_end(worker, monkeypatch)
    tid = await new_thread(rt)
    await worker.start()
    try:
        run = await RunService(rt).create(ALICE, tid, body(input=QUESTION))
        await asyncio.wait_for(stuck.wait(), timeout=60)
        assert await wait_status(rt, run.run_id, {"success", "error"}, within=60) == "success"
    finally:
        await worker.stop()
    async with rt.pool.connection() as conn:
        final = await repo.get_run(conn, uuid.UUID(run.run_id))
    assert final is not None and final["attempt"] == 2
    assert await thread_status(rt, tid) == "idle"


async def slow_run(rt: Runtime, mock_llm: MockLLM, tid: uuid.UUID, **fields: Any) -> str:
    """Start a run whose model call takes 20 s, and wait until it is running."""
    await mock_llm.add_faults([{"kind": "timeout", "delay_s": 20.0, "count": 1}])
    run = await RunService(rt).create(ALICE, tid, body(input=QUESTION, **fields))
    await wait_status(rt, run.run_id, {"running"})
    deadline = time.monotonic() + 20
    while not await mock_llm.requests():  # the model call has started
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    return run.run_id


async def test_cancel_interrupt_stops_a_running_run(
    rt: Runtime, worker: RunWorker, mock_llm: MockLLM
) -> None:
    service = RunService(rt)
    tid = await new_thread(rt)
    run_id = await slow_run(rt, mock_llm, tid)
    started = time.monotonic()
    await service.cancel(ALICE, tid, run_id, action="interrupt", wait=True)
    assert time.monotonic() - started < 5
    assert await status_of(rt, run_id) == "interrupted"
    assert await thread_status(rt, tid) == "interrupted"  # as the LangGraph server
    with pytest.raises(NotFound):  # it ended: no active run by that id
        await service.cancel(ALICE, tid, run_id)
    # The checkpoints it wrote are kept: the thread holds the question.
    state = await rt.graph.aget_state({"configurable": {"thread_id": str(tid)}})
    assert [m.type for m in state.values["messages"]] == ["human"]
    # `input: null` continues it from where it stopped, and answers the question once.
    again = await service.create(ALICE, tid, body())
    assert await wait_status(rt, again.run_id, {"success", "error"}, within=60) == "success"
    state = await rt.graph.aget_state({"configurable": {"thread_id": str(tid)}})
    assert [m.type for m in state.values["messages"]] == ["human", "ai"]
    assert await thread_status(rt, tid) == "idle"


async def test_cancel_rollback_deletes_the_run_and_its_checkpoints(
    rt: Runtime, worker: RunWorker, mock_llm: MockLLM
) -> None:
    service = RunService(rt)
    tid = await new_thread(rt)
    run_id = await slow_run(rt, mock_llm, tid)
    async with rt.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM checkpoints WHERE metadata ->> 'run_id' = %s", (run_id,)
        )
        row = await cur.fetchone()
        assert row is not None and row["n"] > 0
    await service.cancel(ALICE, tid, run_id, action="rollback", wait=True)
    assert await status_of(rt, run_id) is None
    with pytest.raises(NotFound):
        await service.get(ALICE, tid, run_id)
    async with rt.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", (str(tid),)
        )
        row = await cur.fetchone()
        assert row is not None and row["n"] == 0
    assert await thread_status(rt, tid) == "idle"


async def test_cancel_pending_runs_without_a_worker(rt: Runtime, clean: None) -> None:
    service = RunService(rt)
    tid = await new_thread(rt)
    first = await service.create(ALICE, tid, body(input=QUESTION))
    second = await service.create(ALICE, tid, body(input=QUESTION))
    await service.cancel(ALICE, tid, first.run_id)
    assert await status_of(rt, first.run_id) == "interrupted"
    await service.cancel_many(
        ALICE, thread_id=str(tid), run_ids=None, status="pending", action="rollback"
    )
    assert await status_of(rt, second.run_id) is None
    assert await thread_status(rt, tid) == "idle"


async def test_multitask_interrupt_cancels_the_active_run_on_its_worker(
    rt: Runtime, worker: RunWorker, mock_llm: MockLLM
) -> None:
    tid = await new_thread(rt)
    first = await slow_run(rt, mock_llm, tid)
    second = await RunService(rt).create(
        ALICE, tid, body(input=QUESTION, multitask_strategy="interrupt")
    )
    assert await wait_status(rt, second.run_id, {"success", "error"}) == "success"
    assert await status_of(rt, first) == "interrupted"


async def test_shutdown_gives_runs_back_to_the_queue(
    rt: Runtime, clean: None, mock_llm: MockLLM
) -> None:
    worker = RunWorker(rt, rt.deps.settings, config=quick_config(shutdown_grace_s=0.5))
    await worker.start()
    tid = await new_thread(rt)
    try:
        run_id = await slow_run(rt, mock_llm, tid)
    finally:
        await worker.stop()
    async with rt.pool.connection() as conn:
        row = await repo.get_run(conn, uuid.UUID(run_id))
    assert row is not None and row["status"] == "pending" and row["attempt"] == 2
    worker = RunWorker(rt, rt.deps.settings, config=quick_config())
    await worker.start()
    try:
        assert await wait_status(rt, run_id, {"success", "error"}) == "success"
    finally:
        await worker.stop()


async def test_resume_of_an_approval_needs_an_approver(rt: Runtime, worker: RunWorker) -> None:
    service = RunService(rt)
    tid = await new_thread(rt)
    ask = {"messages": [{"role": "user", "content": "Refund $600 on LS-10017 please."}]}
    run = await service.create(ALICE, tid, body(input=ask))
    assert await wait_status(rt, run.run_id, {"interrupted", "error", "success"}) == "interrupted"
    assert await thread_status(rt, tid) == "interrupted"
    resume = {"resume": {"decisions": [{"type": "approve"}]}}
    with pytest.raises(Forbidden):
        await service.create(ALICE, tid, body(command=resume))
    approved = await service.create(MIA, tid, body(command=resume))
    with pytest.raises(Conflict, match="already approved by mia"):  # decided once
        await service.create(MIA, tid, body(command=resume))
    assert await wait_status(rt, approved.run_id, {"success", "error"}) == "success"
    async with rt.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT approved_by FROM refunds WHERE thread_id = %s", (str(tid),)
        )
        rows = await cur.fetchall()
    assert [r["approved_by"] for r in rows] == ["mia"]
    assert await thread_status(rt, tid) == "idle"
    # The approvals module saw the interrupt and the decision sent through the runs API.
    async with rt.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, decided_by, run_id, resume_run_id FROM approvals WHERE thread_id = %s",
            (tid,),
        )
        [approval] = await cur.fetchall()
    assert approval["status"] == "approved" and approval["decided_by"] == "mia"
    assert str(approval["run_id"]) == run.run_id
    assert str(approval["resume_run_id"]) == approved.run_id


async def test_a_run_can_start_from_an_earlier_checkpoint(rt: Runtime, worker: RunWorker) -> None:
    service = RunService(rt)
    tid = await new_thread(rt)
    first = await service.create(ALICE, tid, body(input=QUESTION))
    assert await wait_status(rt, first.run_id, {"success", "error"}) == "success"
    history = [
        s async for s in rt.graph.aget_state_history({"configurable": {"thread_id": str(tid)}})
    ]
    start = next(s for s in history if s.next == ("input_filter",))
    checkpoint_id = start.config["configurable"]["checkpoint_id"]
    fork = await service.create(
        ALICE,
        tid,
        body(
            checkpoint_id=checkpoint_id,
            input={"messages": [{"role": "user", "content": "Is customer data encrypted?"}]},
        ),
    )
    assert fork.kwargs["checkpoint"]["checkpoint_id"] == checkpoint_id
    assert await wait_status(rt, fork.run_id, {"success", "error"}) == "success"
    state = await rt.graph.aget_state({"configurable": {"thread_id": str(tid)}})
    humans = [m.content for m in state.values["messages"] if m.type == "human"]
    assert humans[-1] == "Is customer data encrypted?"
    assert state.parent_config is not None


async def test_a_queued_resume_by_a_user_is_refused_when_it_runs(
    rt: Runtime, worker: RunWorker
) -> None:
    """A user cannot slip a resume into the queue before the approval interrupt exists."""
    service = RunService(rt)
    tid = await new_thread(rt)
    ask = {"messages": [{"role": "user", "content": "Refund $600 on LS-10017 please."}]}
    run = await service.create(ALICE, tid, body(input=ask))
    with pytest.raises((Conflict, Forbidden)):  # bound at creation: nothing waits yet
        await service.create(
            ALICE, tid, body(command={"resume": {"decisions": [{"type": "approve"}]}})
        )
    assert await wait_status(rt, run.run_id, {"interrupted", "error", "success"}) == "interrupted"
    with pytest.raises(Forbidden):  # and once it waits, a user may not answer it
        await service.create(
            ALICE, tid, body(command={"resume": {"decisions": [{"type": "approve"}]}})
        )
    async with rt.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM refunds WHERE thread_id = %s", (str(tid),)
        )
        refunds = await cur.fetchone()
    assert refunds is not None and refunds["n"] == 0
    assert await thread_status(rt, tid) == "interrupted"


# --------------------------------------------------------------------------- saver lock


class _S(TypedDict, total=False):
    n: int
    text: str


def _tiny_graph(saver: Any) -> Any:
    async def step(state: _S) -> _S:
        return {"n": state.get("n", 0) + 1, "text": "x" * 200}

    builder = StateGraph(_S)
    for name in ("a", "b", "c"):
        builder.add_node(name, step)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder.compile(checkpointer=saver)


async def _runs_per_second(graphs: list[Any], concurrency: int, total: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await graphs[i % len(graphs)].ainvoke(
                {"n": 0}, {"configurable": {"thread_id": str(uuid.uuid4())}}, durability="sync"
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    return total / (time.perf_counter() - started)


class _DelayedCursor(AsyncCursor[Any]):
    """Adds a 1 ms round trip to every statement and records how many overlap."""

    in_flight = 0
    most_in_flight = 0

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        cls = _DelayedCursor
        cls.in_flight += 1
        cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)
        try:
            await asyncio.sleep(0.001)
            return await super().execute(*args, **kwargs)
        finally:
            cls.in_flight -= 1


async def test_one_saver_on_a_pool_runs_statements_concurrently(
    engine_db: str, clean: None
) -> None:
    """langgraph #7259: AsyncPostgresSaver runs one query at a time (an instance lock).

    On a pool each cursor has its own connection, so `StewardSaver` drops the lock: one saver
    (the worker's only graph) has several statements in flight at once.
    """
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "prepare_threshold": 0,
        "row_factory": dict_row,
        "cursor_factory": _DelayedCursor,
    }
    pool: Any
    async with AsyncConnectionPool(
        engine_db, min_size=8, max_size=8, kwargs=kwargs, open=False
    ) as pool:
        await pool.open(wait=True)
        _DelayedCursor.most_in_flight = 0
        await _runs_per_second([_tiny_graph(make_checkpointer(pool))], 16, 32)
    assert _DelayedCursor.most_in_flight > 1


async def test_a_waiter_on_a_runs_end_sleeps_through_its_event_batches(
    rt: Runtime, engine_db: str
) -> None:
    """Event batches wake stream tailers; only a status change wakes `/wait` (issue 10)."""
    hub = EventHub(engine_db)
    await hub.start()
    run_id = str(uuid.uuid4())
    tailer, waiter = hub.subscribe(run_id), hub.subscribe(run_id, ends_only=True)
    try:
        async with rt.pool.connection() as conn:
            await repo.notify(conn, repo.EVENTS_CHANNEL, f"{run_id}{repo.EVENTS_ONLY}")
        await asyncio.wait_for(tailer.wait(), timeout=10)
        assert not waiter.is_set()  # the same notification was dispatched to both
        tailer.clear()
        async with rt.pool.connection() as conn:
            await repo.notify(conn, repo.EVENTS_CHANNEL, run_id)
        await asyncio.wait_for(waiter.wait(), timeout=10)
        await asyncio.wait_for(tailer.wait(), timeout=10)
    finally:
        hub.unsubscribe(run_id, tailer)
        hub.unsubscribe(run_id, waiter)
        await hub.stop()
