"""Graceful drain of a real `steward serve` process on SIGTERM / SIGINT.

After the signal `/readyz` answers 503 at once, the listener keeps serving for
STEWARD_SHUTDOWN_DELAY_S, the worker claims no new run, then running runs get
STEWARD_RUN_SHUTDOWN_GRACE_S: a run that finishes in time ends `success` on the draining
replica; one that does not goes back to `pending` and another replica completes it.

Everything is polled with generous deadlines; the only timing assertions are lower bounds
that the server's own clock guarantees (it cannot exit before its delay) and one loose upper
bound on the exit. The servers get their own database, so the session `server` claims none
of these runs.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from core.db.migrate import migrate
from core.db.pool import DbPool, open_pool
from core.settings import Settings
from mock_llm.process import MockLLM
from server.keys import KeyStore
from tests.fixtures_db import create_database, drop_database
from tests.serve_helpers import Served, service_env, start_serve, until, wait_exit

pytestmark = pytest.mark.e2e

DELAY_S = 6.0
"""STEWARD_SHUTDOWN_DELAY_S of these servers."""
GRACE_S = 2.0
"""STEWARD_RUN_SHUTDOWN_GRACE_S of these servers."""
EXIT_SLACK_S = 45.0
"""On top of delay + grace: cancelling, releasing, closing the pool, interpreter exit."""
QUESTION: Any = {"messages": [{"role": "user", "content": "How long is the return window?"}]}


@pytest.fixture(scope="module", name="drain_db")
def fx_drain_db(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url, prefix="steward_drain")
    try:
        yield url
    finally:
        drop_database(pg_server_url, url)


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="drain_pool")
async def fx_drain_pool(drain_db: str) -> AsyncIterator[DbPool]:
    settings = Settings(database_url=drain_db, db_pool_min=1, db_pool_max=4)
    async with open_pool(drain_db, settings) as pool:
        await migrate(pool, drain_db)
        yield pool


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="alice")
async def fx_alice(drain_pool: DbPool) -> str:
    return await KeyStore(drain_pool).create("alice", "acme", "user")


@pytest.fixture(name="launch")
def fx_launch(
    drain_db: str, steward_home: Path, mock_llm: MockLLM, tmp_path: Path
) -> Iterator[Callable[[str], Served]]:
    started: list[Served] = []
    env = service_env(
        DATABASE_URL=drain_db,
        STEWARD_HOME=str(steward_home),
        OPENAI_BASE_URL=mock_llm.base_url,
        OPENAI_API_KEY="test-key",
        STEWARD_LLM_TIMEOUT_S="120",
        STEWARD_SHUTDOWN_DELAY_S=str(DELAY_S),
        STEWARD_RUN_SHUTDOWN_GRACE_S=str(GRACE_S),
    )

    def launch(name: str) -> Served:
        served = start_serve(env, tmp_path / f"{name}.log")
        started.append(served)
        return served

    try:
        yield launch
    finally:
        for served in started:
            served.stop()


def client(served: Served, key: str) -> LangGraphClient:
    return get_client(url=served.url, api_key=key)


async def run_row(pool: DbPool, run_id: str) -> dict[str, Any]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, worker_id, attempt FROM runs WHERE run_id = %s", (uuid.UUID(run_id),)
        )
        row = await cur.fetchone()
    assert row is not None, run_id
    return dict(row)


async def start_slow_run(
    served: Served, key: str, mock: MockLLM, delay_s: float
) -> tuple[str, str]:
    """A background run whose model call takes `delay_s`; returns once that call is made."""
    await mock.add_faults([{"kind": "timeout", "delay_s": delay_s, "count": 1}])
    alice = client(served, key)
    tid: str = (await alice.threads.create())["thread_id"]
    run_id: str = (await alice.runs.create(tid, "agent", input=QUESTION))["run_id"]
    await until(mock.requests, bool, within=60, what="the run reached the model")
    return tid, run_id


async def signal_and_see_503(served: Served, sig: signal.Signals) -> tuple[float, float]:
    """Send `sig`; poll `/readyz` until 503. Returns (monotonic time sent, seconds to 503)."""
    async with httpx.AsyncClient(base_url=served.url, timeout=10.0) as http:
        assert (await http.get("/readyz")).status_code == 200
        sent = time.monotonic()
        served.process.send_signal(sig)
        ready = await until(
            lambda: http.get("/readyz"),
            lambda r: r.status_code != 200,
            within=30,
            what="/readyz answers 503 after the signal",
            interval=0.01,
        )
        latency = time.monotonic() - sent
    assert ready.status_code == 503, ready.text
    assert ready.json()["status"] == "draining", ready.text
    assert ready.headers.get("connection") == "close"
    print(f"\n{sig.name}: /readyz 503 after {latency * 1000:.0f} ms")
    return sent, latency


async def test_sigterm_drains_and_another_replica_completes_the_unfinished_run(
    launch: Callable[[str], Served],
    drain_pool: DbPool,
    alice: str,
    mock_llm_clean: MockLLM,
) -> None:
    a = launch("a")
    # The model call takes far longer than delay + grace: the run cannot finish on `a`.
    tid, run_id = await start_slow_run(a, alice, mock_llm_clean, 90.0)
    row = await run_row(drain_pool, run_id)
    assert row["status"] == "running" and int(row["worker_id"].split(":")[1]) == a.process.pid

    sent, _ = await signal_and_see_503(a, signal.SIGTERM)

    # The listener still serves (the API answers; the run still executes there) ...
    on_a = client(a, alice)
    assert (await on_a.runs.get(tid, run_id))["status"] == "running"
    # ... and a run created now is queued but never claimed by the draining replica.
    late_tid: str = (await on_a.threads.create())["thread_id"]
    late_id: str = (await on_a.runs.create(late_tid, "agent", input=QUESTION))["run_id"]
    assert a.process.poll() is None, "answered while draining, before the listener closed"
    assert (await on_a.runs.get(late_tid, late_id))["status"] == "pending"

    code = await wait_exit(a.process, DELAY_S + GRACE_S + EXIT_SLACK_S)
    exited = time.monotonic() - sent
    assert code is not None, f"still running {exited:.0f}s after SIGTERM:\n{a.log()[-4000:]}"
    print(f"SIGTERM: exited with {code} after {exited:.1f}s")
    assert code == 0, a.log()[-4000:]
    assert exited >= DELAY_S, f"exited {exited:.1f}s after SIGTERM, before the drain delay"
    assert "released for another worker" in a.log()

    # Back to the queue for another replica: the in-flight run as its next attempt, the late
    # run untouched.
    assert await run_row(drain_pool, run_id) == {
        "status": "pending",
        "worker_id": None,
        "attempt": 2,
    }
    assert await run_row(drain_pool, late_id) == {
        "status": "pending",
        "worker_id": None,
        "attempt": 1,
    }

    b = launch("b")
    on_b = client(b, alice)
    out = await asyncio.wait_for(on_b.runs.join(tid, run_id), timeout=120)
    assert out["response"]["sources"], out
    assert [m["type"] for m in out["messages"]] == ["human", "ai"]
    late_out = await asyncio.wait_for(on_b.runs.join(late_tid, late_id), timeout=120)
    assert late_out["response"]["sources"], late_out
    for rid in (run_id, late_id):
        row = await run_row(drain_pool, rid)
        assert row["status"] == "success", row
        assert int(row["worker_id"].split(":")[1]) == b.process.pid


async def test_a_run_in_flight_at_sigint_finishes_before_the_process_exits(
    launch: Callable[[str], Served],
    drain_pool: DbPool,
    alice: str,
    mock_llm_clean: MockLLM,
) -> None:
    c = launch("c")
    # The model call ends well inside the drain delay: the run completes on `c`.
    tid, run_id = await start_slow_run(c, alice, mock_llm_clean, 2.0)

    sent, _ = await signal_and_see_503(c, signal.SIGINT)
    code = await wait_exit(c.process, DELAY_S + GRACE_S + EXIT_SLACK_S)
    exited = time.monotonic() - sent
    assert code is not None, f"still running {exited:.0f}s after SIGINT:\n{c.log()[-4000:]}"
    print(f"SIGINT: exited with {code} after {exited:.1f}s")
    assert code == 0, c.log()[-4000:]
    assert exited >= DELAY_S

    row = await run_row(drain_pool, run_id)
    assert row["status"] == "success" and row["attempt"] == 1, row
    assert int(row["worker_id"].split(":")[1]) == c.process.pid
    assert "released for another worker" not in c.log()
    async with drain_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status FROM threads WHERE thread_id = %s", (uuid.UUID(tid),)
        )
        thread = await cur.fetchone()
    assert thread is not None and thread["status"] == "idle"
