"""The runs engine under the faults of issue 9 that this wave closed: lost events, deadlocks."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from server import threads_repo
from server.runs import repo
from server.runs.events import EventHub, EventWriter

if TYPE_CHECKING:
    from core.db.pool import DbPool
    from tests.fixtures_server import RunningServer

pytestmark = pytest.mark.integration


async def held_run(pool: DbPool) -> uuid.UUID:
    """A thread with one run held by worker `w` (attempt 1), as the executor holds it."""
    thread_id, run_id = uuid.uuid4(), uuid.uuid4()
    async with pool.connection() as conn, conn.transaction():
        await threads_repo.insert_thread(conn, thread_id, tenant_id="t-events", owner_id="u")
        await repo.insert_run(
            conn,
            run_id=run_id,
            thread_id=thread_id,
            tenant_id="t-events",
            owner_id="u",
            assistant_id="agent",
            kwargs="{}",
            metadata="{}",
            multitask_strategy="enqueue",
            after_seconds=None,
        )
        await conn.execute(
            "UPDATE runs SET status = 'running', worker_id = 'w', attempt = 1 WHERE run_id = %s",
            (run_id,),
        )
    return run_id


async def test_closing_the_writer_during_a_flush_loses_no_event(
    db_pool: DbPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race behind streams without their last events: close() while a batch is in flight.

    The flush has taken the batch and is inside its INSERT when the run finishes and closes
    the writer; every event must end up stored or handed to the final transaction, once.
    """
    run_id = await held_run(db_pool)
    inside, release = asyncio.Event(), asyncio.Event()
    real_insert = repo.insert_events

    async def slow_insert(conn: Any, rid: uuid.UUID, rows: Any, **kwargs: Any) -> bool:
        inside.set()
        await release.wait()
        return await real_insert(conn, rid, rows, **kwargs)

    monkeypatch.setattr(repo, "insert_events", slow_insert)
    writer = EventWriter(db_pool, EventHub(None), run_id, fence=("w", 1), next_seq=1)
    writer.start()
    for i in range(5):
        writer.emit("values", {"i": i})
    await asyncio.wait_for(inside.wait(), timeout=10)
    closing = asyncio.create_task(writer.close())
    await asyncio.sleep(0.05)  # close() runs while the batch is in the INSERT
    release.set()
    await asyncio.wait_for(closing, timeout=10)
    monkeypatch.setattr(repo, "insert_events", real_insert)
    leftover = writer.take()
    async with db_pool.connection() as conn:
        await repo.insert_events(conn, run_id, leftover)
        cur = await conn.execute(
            "SELECT seq, data FROM run_events WHERE run_id = %s AND seq > 0 ORDER BY seq",
            (run_id,),
        )
        stored = await cur.fetchall()
    assert [r["seq"] for r in stored] == [1, 2, 3, 4, 5]
    assert [r["data"]["i"] for r in stored] == [0, 1, 2, 3, 4]


async def test_300_enqueues_on_one_thread_never_deadlock(server: RunningServer) -> None:
    """Creates lock thread then runs; finishes now lock in the same order (docs)."""
    key = await server.keys("burst", f"t-{uuid.uuid4().hex[:8]}", "user")
    body = {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": "What is the return window?"}]},
        "multitask_strategy": "enqueue",
    }
    async with httpx.AsyncClient(
        base_url=server.url, headers={"x-api-key": key}, timeout=120
    ) as http:
        tid = (await http.post("/threads", json={})).json()["thread_id"]
        gate = asyncio.Semaphore(30)

        async def enqueue() -> int:
            async with gate:
                return (await http.post(f"/threads/{tid}/runs", json=body)).status_code

        codes = await asyncio.gather(*(enqueue() for _ in range(300)))
        assert sorted(set(codes)) == [200], sorted(set(codes))
        cancel = await http.post("/runs/cancel", json={"thread_id": tid, "status": "all"})
        assert cancel.status_code == 204, cancel.text
        for _ in range(600):
            runs = (await http.get(f"/threads/{tid}/runs", params={"limit": 1000})).json()
            if all(r["status"] not in ("pending", "running") for r in runs):
                break
            await asyncio.sleep(0.1)
        assert len(runs) == 300 and all(r["status"] in ("success", "interrupted") for r in runs)
    assert "deadlock detected" not in server.log()
