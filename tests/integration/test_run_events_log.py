"""Run event logs on real Postgres: deferred writes, joins that flip them live, one read per wait.

A run nobody streams keeps its events in memory until its final transaction; a join asks its
worker (NOTIFY, else the next lease renewal) to store them and go on live. A waiter reads the
run once, then answers from the end's notification. Own database: the e2e `server` fixture
may run a worker on the session database, which would claim these runs.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from core.identity import Principal
from core.settings import Settings
from graph.runtime import Runtime
from mock_llm.process import MockLLM
from server import threads_repo
from server.runs import repo
from server.runs.events import (
    DEFERRED_MAX_BYTES,
    EventHub,
    EventWriter,
    join_point,
    tail,
    wait_until_done,
)
from server.runs.models import parse_run_create
from server.runs.service import RunService
from server.runs.worker import RunWorker, WorkerConfig
from steward.runtime import open_runtime
from tests.fixtures_db import create_database, drop_database
from tests.run_rows import events_row

pytestmark = pytest.mark.integration

ALICE = Principal(key_id="k1", user_id="alice", tenant_id="t-log", role="user")
QUESTION = {"messages": [{"role": "user", "content": "How long is the return window?"}]}
SLOW_S = 3.0


@pytest.fixture(scope="module", name="log_db")
def fx_log_db(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url, prefix="steward_events_log")
    try:
        yield url
    finally:
        drop_database(pg_server_url, url)


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="rt")
async def fx_runtime(log_db: str, steward_home: Path, mock_llm: MockLLM) -> AsyncIterator[Runtime]:
    settings = Settings(
        home=steward_home,
        database_url=log_db,
        openai_base_url=mock_llm.base_url,
        openai_api_key=SecretStr("test-key"),
        llm_timeout_s=30.0,
        db_pool_min=2,
        db_pool_max=10,
    )
    async with open_runtime(settings) as runtime:
        yield runtime


@pytest_asyncio.fixture(loop_scope="session", name="clean")
async def fx_clean(rt: Runtime, mock_llm: MockLLM) -> AsyncIterator[None]:
    await mock_llm.clear_faults()
    await mock_llm.clear_requests()
    yield
    await mock_llm.clear_faults()


@pytest_asyncio.fixture(loop_scope="session", name="worker")
async def fx_worker(rt: Runtime, clean: None) -> AsyncIterator[RunWorker]:
    config = WorkerConfig(slots=4, lease_s=3.0, poll_s=0.2)
    worker = RunWorker(rt, rt.deps.settings, config=config)
    await worker.start()
    yield worker
    await worker.stop()


def body(**fields: Any) -> Any:
    return parse_run_create({"assistant_id": "agent", **fields}, stateless=False)


async def new_thread(rt: Runtime) -> uuid.UUID:
    tid = uuid.uuid4()
    async with rt.pool.connection() as conn:
        await threads_repo.insert_thread(conn, tid, tenant_id="t-log", owner_id="alice")
    return tid


async def stored(rt: Runtime, run_id: str) -> list[tuple[int, str, str]]:
    async with rt.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT seq, event, data::text AS data FROM run_events WHERE run_id = %s ORDER BY seq",
            (uuid.UUID(run_id),),
        )
        return [(r["seq"], r["event"], r["data"]) for r in await cur.fetchall()]


async def until(check: Any, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


async def slow_run(rt: Runtime, mock_llm: MockLLM, **fields: Any) -> str:
    """A run (created as `/wait` creates it) whose model call takes SLOW_S; returns once it
    waits on the model, its first steps' events buffered."""
    await mock_llm.add_faults([{"kind": "timeout", "delay_s": SLOW_S, "count": 1}])
    run = await RunService(rt).create(ALICE, await new_thread(rt), body(input=QUESTION, **fields))

    async def calling() -> bool:
        return bool(await mock_llm.requests())

    await until(calling)
    return run.run_id


async def ended(rt: Runtime, run_id: str) -> None:
    async def done() -> bool:
        return (await events_row(rt.pool, run_id))["status"] not in ("pending", "running")

    await until(done, within=60)


async def test_a_run_nobody_streams_writes_its_events_in_its_final_transaction(
    rt: Runtime, worker: RunWorker, mock_llm: MockLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    inserts: list[str] = []
    real = repo.insert_events

    async def counted(conn: Any, run_id: uuid.UUID, rows: Any, **kwargs: Any) -> bool:
        if rows:
            inserts.append(str(run_id))
        return await real(conn, run_id, rows, **kwargs)

    monkeypatch.setattr(repo, "insert_events", counted)
    run_id = await slow_run(rt, mock_llm, stream_mode=["values", "updates"])
    row = await events_row(rt.pool, run_id)
    assert row["events_mode"] == "deferred"
    assert row["stored"] == 1  # only the `metadata` the create wrote; the steps are in memory
    await ended(rt, run_id)
    events = await stored(rt, run_id)
    assert [s for s, _, _ in events] == list(range(len(events)))
    assert events[0][1] == "metadata" and events[-1][1] == "values"
    assert '"response"' in events[-1][2]
    assert inserts.count(run_id) == 2  # the create's `metadata`, then everything at the end

    streamed = await RunService(rt).create(
        ALICE, await new_thread(rt), body(input=QUESTION), streamed=True
    )
    await ended(rt, streamed.run_id)
    assert (await events_row(rt.pool, streamed.run_id))["events_mode"] == "live"
    assert inserts.count(streamed.run_id) > 2  # stored as they came


async def test_runs_whose_events_a_takeover_cannot_rebuild_write_them_live(
    rt: Runtime, clean: None
) -> None:
    service = RunService(rt)
    for fields in (
        {"stream_mode": ["messages-tuple"]},
        {"stream_mode": ["values", "custom"]},
        {"stream_subgraphs": True},
        {"interrupt_before": ["agent"]},
    ):
        run = await service.create(ALICE, await new_thread(rt), body(input=QUESTION, **fields))
        assert (await events_row(rt.pool, run.run_id))["events_mode"] == "live", fields
        await service.cancel(ALICE, str(run.thread_id), run.run_id)


async def test_a_late_join_of_a_deferred_run_replays_every_event_in_order(
    rt: Runtime, worker: RunWorker, mock_llm: MockLLM
) -> None:
    run_id = await slow_run(rt, mock_llm, stream_mode=["values", "updates"])
    rid = uuid.UUID(run_id)
    assert await join_point(rt.pool, rid, "-1") == -1
    seen: list[repo.EventRow] = []
    async with aclosing(tail(rt.pool, worker.hub, rid, after_seq=-1)) as events:
        async for item in events:
            if item is not None:
                seen.append(item)
                if len(seen) == 3:  # the buffered steps came before the run's end
                    assert (await events_row(rt.pool, run_id))["status"] == "running"
    assert (await events_row(rt.pool, run_id))["events_mode"] == "live"
    assert [(e.seq, e.event, e.data) for e in seen] == await stored(rt, run_id)
    assert seen[-1].event == "values" and '"response"' in seen[-1].data


async def test_a_join_at_the_live_edge_waits_for_the_buffer_then_follows(
    rt: Runtime, worker: RunWorker, mock_llm: MockLLM
) -> None:
    """Without Last-Event-ID a join starts where the run is now, as it would on a live run."""
    run_id = await slow_run(rt, mock_llm)
    rid = uuid.UUID(run_id)
    after = await join_point(rt.pool, rid, None)
    assert after is None  # its worker has not stored its buffer yet
    seen = [e async for e in tail(rt.pool, worker.hub, rid, after_seq=after) if e is not None]
    log = await stored(rt, run_id)
    # The steps before the model call (their `values`, seq 1 on) are not sent again.
    assert seen and seen[0].seq > 2, [(s, e) for s, e, _ in log]
    assert [(e.seq, e.event, e.data) for e in seen] == log[-len(seen) :]
    assert '"response"' in seen[-1].data


async def test_a_missed_stream_notification_is_picked_up_at_the_lease_renewal(
    rt: Runtime, worker: RunWorker, mock_llm: MockLLM
) -> None:
    run_id = await slow_run(rt, mock_llm)
    async with rt.pool.connection() as conn:  # `want_live` without its NOTIFY
        await conn.execute(
            "UPDATE runs SET events_mode = 'wanted' WHERE run_id = %s", (uuid.UUID(run_id),)
        )

    async def live() -> bool:
        row = await events_row(rt.pool, run_id)
        return bool(row["events_mode"] == "live" and row["status"] == "running")

    await until(live, within=SLOW_S)  # renewed every lease / 3 = 1 s, before the run ends
    assert (await events_row(rt.pool, run_id))["stored"] > 1
    await ended(rt, run_id)


async def test_a_join_before_the_claim_makes_the_run_live_from_its_start(
    rt: Runtime, clean: None
) -> None:
    run = await RunService(rt).create(ALICE, await new_thread(rt), body(input=QUESTION))
    rid = uuid.UUID(run.run_id)
    assert await join_point(rt.pool, rid, None) == 0  # pending: everything is stored
    assert (await events_row(rt.pool, run.run_id))["events_mode"] == "wanted"
    async with rt.pool.connection() as conn:
        claimed = await repo.claim_next(conn, "w-test", 30.0)
    assert claimed is not None and claimed["run_id"] == rid
    assert claimed["events_mode"] == "live"
    async with rt.pool.connection() as conn:
        await conn.execute("DELETE FROM runs WHERE run_id = %s", (rid,))


async def test_a_deferred_writer_stores_a_full_buffer_and_goes_live_on_request(
    rt: Runtime, clean: None
) -> None:
    tid = await new_thread(rt)
    run = await RunService(rt).create(ALICE, tid, body(input=QUESTION))
    rid = uuid.UUID(run.run_id)
    async with rt.pool.connection() as conn:
        await conn.execute(
            "UPDATE runs SET status = 'running', worker_id = 'w', attempt = 1 WHERE run_id = %s",
            (rid,),
        )
    writer = EventWriter(rt.pool, EventHub(None), rid, fence=("w", 1), next_seq=1, live=False)
    writer.start()
    try:
        writer.emit("values", {"small": True})
        await asyncio.sleep(0.2)
        assert (await events_row(rt.pool, run.run_id))["stored"] == 1  # kept in memory
        writer.emit("values", {"big": "x" * DEFERRED_MAX_BYTES})

        async def flushed() -> bool:
            return int((await events_row(rt.pool, run.run_id))["stored"]) == 3

        await until(flushed)
        assert (await events_row(rt.pool, run.run_id))["events_mode"] == "deferred"
        writer.emit("values", {"after": 1})
        await asyncio.sleep(0.2)
        assert (await events_row(rt.pool, run.run_id))["stored"] == 3
        writer.go_live()

        async def live() -> bool:
            row = await events_row(rt.pool, run.run_id)
            return bool(row["events_mode"] == "live" and int(row["stored"]) == 4)

        await until(live)
        writer.emit("values", {"after": 2})

        async def batched() -> bool:
            return int((await events_row(rt.pool, run.run_id))["stored"]) == 5

        await until(batched)
    finally:
        await writer.close()
    assert [s for s, _, _ in await stored(rt, run.run_id)] == [0, 1, 2, 3, 4]
    async with rt.pool.connection() as conn:
        await conn.execute("DELETE FROM runs WHERE run_id = %s", (rid,))


async def waiter_reads(
    rt: Runtime, hub: EventHub, run_id: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> tuple[list[uuid.UUID], asyncio.Task[tuple[str, str | None]]]:
    """Start `wait_until_done` on a run; returns its reads and the task yielding its end."""
    reads: list[uuid.UUID] = []
    real = repo.get_output

    async def counted(conn: Any, rid: uuid.UUID) -> tuple[str, str | None] | None:
        reads.append(rid)
        return await real(conn, rid)

    monkeypatch.setattr(repo, "get_output", counted)

    async def outcome() -> tuple[str, str | None]:
        async with aclosing(wait_until_done(rt.pool, hub, run_id)) as items:
            async for item in items:
                if item is not None:
                    return item
        raise AssertionError("no end")

    async def read_once() -> bool:
        return bool(reads)

    task = asyncio.create_task(outcome())
    await until(read_once)
    return reads, task


async def test_a_waiter_reads_the_run_once_and_answers_from_its_end_notification(
    rt: Runtime, clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = EventHub(rt.database_url)
    await hub.start()
    run = await RunService(rt).create(ALICE, await new_thread(rt), body(input=QUESTION))
    rid = uuid.UUID(run.run_id)
    try:
        reads, task = await waiter_reads(rt, hub, rid, monkeypatch)
        async with rt.pool.connection() as conn:
            for _ in range(5):  # event batches: a waiter sleeps through them
                await repo.notify(conn, repo.EVENTS_CHANNEL, f"{rid}{repo.EVENTS_ONLY}")
            await repo.notify(
                conn, repo.EVENTS_CHANNEL, repo.end_payload(rid, "success", '{"a": 1}')
            )
        assert await asyncio.wait_for(task, timeout=10) == ("success", '{"a": 1}')
        assert reads == [rid]  # the read after subscribing, none after

        # An output too long for a notification: the end says so, the waiter reads it.
        reads, task = await waiter_reads(rt, hub, rid, monkeypatch)
        big = '{"a": "' + "x" * repo.channels.MAX_PAYLOAD + '"}'
        async with rt.pool.connection() as conn:
            await conn.execute(
                "UPDATE runs SET status = 'success', output = %s::jsonb WHERE run_id = %s",
                (big, rid),
            )
            await repo.notify(conn, repo.EVENTS_CHANNEL, repo.end_payload(rid, "success", big))
        status, output = await asyncio.wait_for(task, timeout=10)
        assert status == "success" and output is not None and len(output) > len(big) - 5
        assert reads == [rid, rid]

        # A waiter that starts after the end answers from its first read.
        reads, task = await waiter_reads(rt, hub, rid, monkeypatch)
        assert (await asyncio.wait_for(task, timeout=2))[0] == "success"
        assert reads == [rid]
    finally:
        await hub.stop()
        async with rt.pool.connection() as conn:
            await conn.execute("DELETE FROM runs WHERE run_id = %s", (rid,))


async def test_many_waiters_on_one_run_each_get_its_output_without_reading_it_again(
    rt: Runtime, worker: RunWorker, mock_llm: MockLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id = await slow_run(rt, mock_llm)
    rid = uuid.UUID(run_id)
    reads: list[uuid.UUID] = []
    real = repo.get_output

    async def counted(conn: Any, r: uuid.UUID) -> tuple[str, str | None] | None:
        reads.append(r)
        return await real(conn, r)

    monkeypatch.setattr(repo, "get_output", counted)

    async def outcome() -> tuple[str, str | None]:
        async with aclosing(wait_until_done(rt.pool, worker.hub, rid)) as items:
            async for item in items:
                if item is not None:
                    return item
        raise AssertionError("no end")

    results = await asyncio.wait_for(asyncio.gather(*(outcome() for _ in range(30))), 60)
    async with rt.pool.connection() as conn:
        want = await real(conn, rid)
    assert want is not None and want[0] == "success"
    assert all(r == want for r in results)
    assert len(reads) == 30  # one read each, when it subscribed


async def test_events_follow_their_run_without_a_foreign_key(rt: Runtime, clean: None) -> None:
    """Migration 0011: no key to lock per insert; deletes still take the events along."""
    ghost = uuid.uuid4()
    service = RunService(rt)
    tid = await new_thread(rt)
    kept = await service.create(ALICE, tid, body(input=QUESTION))
    gone = await service.create(ALICE, await new_thread(rt), body(input=QUESTION))
    async with rt.pool.connection() as conn:
        await repo.insert_events(conn, ghost, [(0, "values", "{}")])  # no run: accepted
        await conn.execute(
            "DELETE FROM threads WHERE thread_id = %s", (uuid.UUID(str(gone.thread_id)),)
        )
        cur = await conn.execute(
            "SELECT run_id FROM run_events WHERE run_id = ANY(%s)",
            ([ghost, uuid.UUID(kept.run_id), uuid.UUID(gone.run_id)],),
        )
        assert {r["run_id"] for r in await cur.fetchall()} == {ghost, uuid.UUID(kept.run_id)}
        await repo.purge_events(conn, plain_after_s=300.0, resumable_after_s=3600.0)
        cur = await conn.execute(
            "SELECT run_id FROM run_events WHERE run_id = ANY(%s)",
            ([ghost, uuid.UUID(kept.run_id)],),
        )
        assert {r["run_id"] for r in await cur.fetchall()} == {uuid.UUID(kept.run_id)}
        await repo.delete_run(conn, uuid.UUID(kept.run_id))
        cur = await conn.execute(
            "SELECT count(*) AS n FROM run_events WHERE run_id = %s", (uuid.UUID(kept.run_id),)
        )
        row = await cur.fetchone()
        assert row is not None and row["n"] == 0
