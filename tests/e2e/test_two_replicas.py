"""Two `steward serve` processes on one database: runs are coordinated by Postgres alone.

The replicas get their own database (the session `server` would otherwise claim their runs),
a 3 s run lease, and a 30 s model timeout so a delayed model call can outlive a SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import ConflictError

from core.db.migrate import migrate
from core.db.pool import DbPool, open_pool
from core.domain.seed import seed_demo_orders
from core.settings import Settings
from mock_llm.process import MockLLM
from server.keys import KeyStore
from tests.e2e.test_wait_joins import parts_of, slow_wait, stored
from tests.fixtures_db import create_database, drop_database
from tests.fixtures_server import ROOT, _wait_ready, free_port, serve_command

pytestmark = pytest.mark.e2e

APPROVE: Any = {"resume": {"decisions": [{"type": "approve"}]}}
LEASE_S = 3


@dataclass
class Replica:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module", name="replica_db")
def fx_replica_db(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url, prefix="steward_replicas")
    try:
        yield url
    finally:
        drop_database(pg_server_url, url)


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="replica_pool")
async def fx_replica_pool(replica_db: str) -> AsyncIterator[DbPool]:
    settings = Settings(database_url=replica_db, db_pool_min=1, db_pool_max=4)
    async with open_pool(replica_db, settings) as pool:
        await migrate(pool, replica_db)
        await seed_demo_orders(pool)
        yield pool


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="keys")
async def fx_keys(replica_pool: DbPool) -> dict[str, str]:
    store = KeyStore(replica_pool)
    return {
        "alice": await store.create("alice", "acme", "user"),
        "mia": await store.create("mia", "acme", "approver"),
    }


@pytest.fixture(scope="module", name="replicas")
def fx_replicas(
    replica_db: str,
    keys: dict[str, str],
    steward_home: Path,
    mock_llm: MockLLM,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[list[Replica]]:
    started: list[Replica] = []
    env = {
        **os.environ,
        "DATABASE_URL": replica_db,
        "STEWARD_HOME": str(steward_home),
        "STEWARD_ENV": "development",
        "OPENAI_BASE_URL": mock_llm.base_url,
        "OPENAI_API_KEY": "test-key",
        "STEWARD_LLM_TIMEOUT_S": "30",
        "STEWARD_RUN_LEASE_S": str(LEASE_S),
        "STEWARD_DB_POOL_MAX": "8",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "STEWARD_BLOCKBUSTER": "1",
        "STEWARD_RATE_LIMIT_PER_MINUTE": "0",  # tests poll freely; tests/unit/test_rate_limit.py
        "PYTHONUNBUFFERED": "1",
    }
    try:
        for name in ("a", "b"):
            port = free_port()
            log_path = tmp_path_factory.mktemp(f"replica-{name}") / "server.log"
            with log_path.open("wb") as log:
                proc = subprocess.Popen(
                    serve_command(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
                )
            started.append(Replica(f"http://127.0.0.1:{port}", proc, log_path))
        for replica in started:
            _wait_ready(replica.process, replica.url, replica.log_path)
        yield started
    finally:
        for replica in started:
            if replica.process.poll() is None:
                replica.process.terminate()
        for replica in started:
            try:
                replica.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait(timeout=10)


def client(replica: Replica, key: str) -> LangGraphClient:
    return get_client(url=replica.url, api_key=key)


async def refunds_for(pool: DbPool, thread_id: str) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT amount_cents, approved_by FROM refunds WHERE thread_id = %s", (thread_id,)
        )
        return list(await cur.fetchall())


async def interrupted_thread(replica: Replica, key: str, amount: int) -> str:
    alice = client(replica, key)
    tid: str = (await alice.threads.create())["thread_id"]
    text = f"Refund ${amount} on LS-10017 please."
    ask: Any = {"messages": [{"role": "user", "content": text}]}
    out = await alice.runs.wait(tid, "agent", input=ask)
    assert isinstance(out, dict) and out["__interrupt__"], out
    return tid


async def test_concurrent_resumes_on_two_replicas_refund_once(
    replicas: list[Replica],
    keys: dict[str, str],
    replica_pool: DbPool,
    mock_llm_clean: MockLLM,
) -> None:
    a, b = replicas
    tid = await interrupted_thread(a, keys["alice"], 650)
    on_a, on_b = client(a, keys["mia"]), client(b, keys["mia"])
    results = await asyncio.gather(
        on_a.runs.wait(tid, "agent", command=APPROVE),
        on_b.runs.wait(tid, "agent", command=APPROVE),
        return_exceptions=True,
    )
    # The decision is recorded once: the other replica's resume is a 409, never a second run.
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1 and "409" in str(failures[0]), results
    [refund] = await refunds_for(replica_pool, tid)
    assert refund["amount_cents"] == 65000 and refund["approved_by"] == "mia"
    runs = await on_a.runs.list(tid)
    assert [r["status"] for r in runs] == ["success", "interrupted"]

    # With `reject`, exactly one of two racing resumes is accepted.
    tid = await interrupted_thread(b, keys["alice"], 640)
    outcomes = await asyncio.gather(
        on_a.runs.create(tid, "agent", command=APPROVE, multitask_strategy="reject"),
        on_b.runs.create(tid, "agent", command=APPROVE, multitask_strategy="reject"),
        return_exceptions=True,
    )
    accepted = [o for o in outcomes if isinstance(o, dict)]
    assert len(accepted) == 1, outcomes
    assert [type(o) for o in outcomes if not isinstance(o, dict)] == [ConflictError]
    assert (await on_b.runs.join(tid, accepted[0]["run_id"]))["response"]
    assert len(await refunds_for(replica_pool, tid)) == 1


async def holder_of(pool: DbPool, replicas: list[Replica], run_id: str) -> Replica:
    """The replica whose worker holds the run (its pid is part of `worker_id`)."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT worker_id, status FROM runs WHERE run_id = %s", (uuid.UUID(run_id),)
        )
        row = await cur.fetchone()
    assert row is not None and row["status"] == "running", row
    pid = int(row["worker_id"].split(":")[1])
    [holder] = [r for r in replicas if r.process.pid == pid]
    return holder


async def start_slow_run(
    replica: Replica, key: str, mock: MockLLM, delay_s: float
) -> tuple[str, str]:
    """A background run whose model call takes `delay_s`; returns once the call is made."""
    question: Any = {"messages": [{"role": "user", "content": "How long is the return window?"}]}
    await mock.add_faults([{"kind": "timeout", "delay_s": delay_s, "count": 1}])
    alice = client(replica, key)
    tid: str = (await alice.threads.create())["thread_id"]
    run_id: str = (await alice.runs.create(tid, "agent", input=question))["run_id"]
    deadline = time.monotonic() + 60
    while not await mock.requests():
        assert time.monotonic() < deadline, "the run never reached the model"
        await asyncio.sleep(0.1)
    return tid, run_id


async def test_a_wait_run_joined_on_the_other_replica_streams_whole(
    replicas: list[Replica],
    keys: dict[str, str],
    replica_pool: DbPool,
    mock_llm_clean: MockLLM,
) -> None:
    """The replica that executes a `/wait` run holds its events; a join elsewhere gets them."""
    a = replicas[0]
    tid = (await client(a, keys["alice"]).threads.create())["thread_id"]
    run_id, waiting = await slow_wait(a.url, keys["alice"], mock_llm_clean, tid)
    holder = await holder_of(replica_pool, replicas, run_id)
    [elsewhere] = [r for r in replicas if r is not holder]
    joiner = client(elsewhere, keys["alice"])

    async def join(**kwargs: Any) -> list[Any]:
        return [p async for p in joiner.runs.join_stream(tid, run_id, **kwargs)]

    everything, at_edge = await asyncio.gather(join(last_event_id="-1"), join())
    answer = await asyncio.wait_for(waiting, timeout=60)
    log = await stored(replica_pool, run_id)
    assert parts_of(everything) == log and log[-1] == ("values", answer)
    assert at_edge[0].event == "metadata"
    tail = parts_of(at_edge[1:])
    assert tail and tail == log[len(log) - len(tail) :] and len(tail) < len(log) - 2
    assert (await joiner.runs.join(tid, run_id)) == answer


async def test_cancel_reaches_the_replica_running_the_run(
    replicas: list[Replica],
    keys: dict[str, str],
    replica_pool: DbPool,
    mock_llm_clean: MockLLM,
) -> None:
    tid, run_id = await start_slow_run(replicas[0], keys["alice"], mock_llm_clean, 15.0)
    holder = await holder_of(replica_pool, replicas, run_id)
    [other] = [r for r in replicas if r is not holder]
    started = time.monotonic()
    await client(other, keys["alice"]).runs.cancel(tid, run_id, wait=True)
    assert time.monotonic() - started < 5, "cancelled through NOTIFY, not the lease"
    on_holder = client(holder, keys["alice"])
    assert (await on_holder.runs.get(tid, run_id))["status"] == "interrupted"
    assert (await on_holder.threads.get(tid))["status"] == "interrupted"  # as the LangGraph server


async def test_a_run_survives_the_sigkill_of_its_replica(
    replicas: list[Replica],
    keys: dict[str, str],
    replica_pool: DbPool,
    mock_llm_clean: MockLLM,
) -> None:
    tid, run_id = await start_slow_run(replicas[0], keys["alice"], mock_llm_clean, 15.0)
    victim = await holder_of(replica_pool, replicas, run_id)
    [survivor] = [r for r in replicas if r is not victim]
    killed_at = time.monotonic()
    os.kill(victim.process.pid, signal.SIGKILL)
    victim.process.wait(timeout=10)

    other = client(survivor, keys["alice"])
    out = await asyncio.wait_for(other.runs.join(tid, run_id), timeout=60)
    assert out["response"]["sources"], out
    took = time.monotonic() - killed_at
    assert took < 15, f"taken over after {took:.1f}s (lease {LEASE_S}s)"
    got = await other.runs.get(tid, run_id)
    assert got["status"] == "success"
    async with replica_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT worker_id, attempt FROM runs WHERE run_id = %s", (uuid.UUID(run_id),)
        )
        row = await cur.fetchone()
    assert row is not None and row["attempt"] == 2
    assert int(row["worker_id"].split(":")[1]) == survivor.process.pid
    assert [m["type"] for m in out["messages"]] == ["human", "ai"]
    async with httpx.AsyncClient(base_url=survivor.url) as http:
        assert (await http.get("/readyz")).status_code == 200
    # Its first attempt deferred its events and died with them: the takeover rebuilt the
    # steps it had checkpointed, so the stored stream is still whole.
    replay = [p async for p in other.runs.join_stream(tid, run_id, last_event_id="-1")]
    assert parts_of(replay) == await stored(replica_pool, run_id)
    assert [p.data["attempt"] for p in replay if p.event == "metadata"] == [1, 2]
    assert replay[1].event == "values" and replay[-1].event == "values"
    assert replay[-1].data["response"] == out["response"]
