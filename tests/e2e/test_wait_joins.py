"""Runs nobody streams defer their events; joins, waits and streams still see all of them.

Through `steward serve` and the real `langgraph_sdk` client: a `/wait` run keeps its events in
memory until its end, a client joining its stream late (its id is in the wait's
Content-Location header) gets every event in order, `/runs/stream` still streams live, and
waits answer from the end's notification.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient

from core.db.pool import DbPool
from mock_llm.process import MockLLM
from tests.run_rows import events_row

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytestmark = pytest.mark.e2e

QUESTION: Any = {"messages": [{"role": "user", "content": "How long is the return window?"}]}
SLOW_CALL_S = 4.0
"""The server's model timeout is 5 s; a delayed call still succeeds."""


@pytest.fixture(name="key")
async def fx_key(server: RunningServer) -> str:
    return await server.keys("alice", f"t-{uuid.uuid4().hex[:8]}", "user")


async def stored(pool: DbPool, run_id: str) -> list[tuple[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT event, data FROM run_events WHERE run_id = %s ORDER BY seq",
            (uuid.UUID(run_id),),
        )
        return [(r["event"], r["data"]) for r in await cur.fetchall()]


async def until_model_called(mock: MockLLM) -> None:
    deadline = time.monotonic() + 60  # the first run of a server loads the embedding model
    while not await mock.requests():
        assert time.monotonic() < deadline, "the run never reached the model"
        await asyncio.sleep(0.05)


async def slow_wait(url: str, key: str, mock: MockLLM, tid: str) -> tuple[str, asyncio.Task[Any]]:
    """POST /runs/wait with a slow model call; returns the run id (from Content-Location)
    once the run waits on the model, and the task that reads the wait's answer."""
    await mock.add_faults([{"kind": "timeout", "delay_s": SLOW_CALL_S, "count": 1}])
    started: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def wait() -> Any:
        async with (
            httpx.AsyncClient(base_url=url, headers={"x-api-key": key}, timeout=60) as http,
            http.stream(
                "POST",
                f"/threads/{tid}/runs/wait",
                json={"assistant_id": "agent", "input": QUESTION},
            ) as response,
        ):
            assert response.status_code == 200
            started.set_result(response.headers["content-location"].rsplit("/", 1)[-1])
            return json.loads(await response.aread())

    task = asyncio.create_task(wait())
    run_id = await asyncio.wait_for(started, timeout=60)
    await until_model_called(mock)
    return run_id, task


def parts_of(parts: list[Any]) -> list[tuple[str, Any]]:
    return [(p.event, p.data) for p in parts]


async def test_a_late_join_of_a_wait_run_sees_every_event(
    server: RunningServer, key: str, db_pool: DbPool, mock_llm_clean: MockLLM
) -> None:
    alice = server.client(key)
    tid = (await alice.threads.create())["thread_id"]
    run_id, waiting = await slow_wait(server.url, key, mock_llm_clean, tid)
    row = await events_row(db_pool, run_id)
    assert row["events_mode"] == "deferred" and row["status"] == "running"
    assert row["stored"] == 1  # its first steps are in the worker's memory

    async def join(**kwargs: Any) -> list[Any]:
        return [p async for p in alice.runs.join_stream(tid, run_id, **kwargs)]

    everything, at_edge = await asyncio.gather(join(last_event_id="-1"), join())
    answer = await asyncio.wait_for(waiting, timeout=30)
    log = await stored(db_pool, run_id)
    # Replayed from the start: the whole log, in order, ending with the answer's values.
    assert parts_of(everything) == log
    assert log[0][0] == "metadata" and log[-1] == ("values", answer)
    assert answer["response"]["sources"]
    # Joined at the live edge: its metadata, then what the run emitted after the join.
    assert at_edge[0].event == "metadata" and at_edge[0].data["run_id"] == run_id
    tail = parts_of(at_edge[1:])
    assert tail and tail == log[len(log) - len(tail) :] and len(tail) < len(log) - 2
    assert (await events_row(db_pool, run_id))["events_mode"] == "live"  # the join flipped it


async def test_stream_runs_still_stream_live(
    server: RunningServer, key: str, db_pool: DbPool, mock_llm_clean: MockLLM
) -> None:
    alice = server.client(key)
    tid = (await alice.threads.create())["thread_id"]
    await mock_llm_clean.add_faults([{"kind": "timeout", "delay_s": SLOW_CALL_S, "count": 1}])
    arrivals: list[tuple[float, Any]] = []
    started = time.monotonic()
    async for part in alice.runs.stream(tid, "agent", input=QUESTION, stream_mode="values"):
        arrivals.append((time.monotonic() - started, part))
    run_id = arrivals[0][1].data["run_id"]
    assert (await events_row(db_pool, run_id))["events_mode"] == "live"
    end = arrivals[-1][0]
    assert end >= SLOW_CALL_S
    early = [p for t, p in arrivals if t < end - SLOW_CALL_S / 2]
    assert [p.event for p in early][:2] == ["metadata", "values"]  # before the model answered
    assert parts_of([p for _, p in arrivals]) == await stored(db_pool, run_id)
    # A background run streaming token chunks (not rebuilt by a takeover) is live too.
    run = await alice.runs.create(tid, "agent", input=QUESTION, stream_mode="messages-tuple")
    assert (await events_row(db_pool, run["run_id"]))["events_mode"] == "live"
    await alice.runs.join(tid, run["run_id"])


async def test_a_join_after_the_end_answers_at_once(
    server: RunningServer, key: str, db_pool: DbPool
) -> None:
    alice = server.client(key)
    tid = (await alice.threads.create())["thread_id"]
    answer = await alice.runs.wait(tid, "agent", input=QUESTION)
    [run] = await alice.runs.list(tid)
    started = time.monotonic()
    joined = await alice.runs.join(tid, run["run_id"])
    assert time.monotonic() - started < 1.0
    assert joined == answer
    replay = [p async for p in alice.runs.join_stream(tid, run["run_id"], last_event_id="-1")]
    assert parts_of(replay) == await stored(db_pool, run["run_id"])
    assert replay[-1].data == answer


async def test_many_waiters_on_one_run_each_get_its_output(
    server: RunningServer, key: str, mock_llm_clean: MockLLM
) -> None:
    alice: LangGraphClient = server.client(key)
    tid = (await alice.threads.create())["thread_id"]
    await mock_llm_clean.add_faults([{"kind": "timeout", "delay_s": SLOW_CALL_S, "count": 1}])
    run = await alice.runs.create(tid, "agent", input=QUESTION)
    await until_model_called(mock_llm_clean)
    async with httpx.AsyncClient(
        base_url=server.url, headers={"x-api-key": key}, timeout=60
    ) as http:

        async def join() -> Any:
            response = await http.get(f"/threads/{tid}/runs/{run['run_id']}/join")
            assert response.status_code == 200
            return response.json()

        answers = await asyncio.gather(*(join() for _ in range(40)))
    assert answers[0]["response"]["sources"]
    assert all(a == answers[0] for a in answers)
    assert (await alice.runs.get(tid, run["run_id"]))["status"] == "success"
