"""A Postgres outage under load: `steward serve` reaches its database through a proxy we cut.

Runs are in flight (their model calls are slow) when every database connection is dropped
and new ones are refused for `OUTAGE_S`. While it lasts, requests must fail fast with 503;
once the database is back, every run must end (or go back to the queue and then end) without
an `error` the outage caused, no run may stay `running` without an executor, and the threads
must accept new runs. A watchdog samples the `runs` rows directly (not through the proxy).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import pytest_asyncio

from core.db.migrate import migrate
from core.db.pool import DbPool, open_pool
from core.domain.seed import seed_demo_orders
from core.settings import Settings
from mock_llm.process import MockLLM
from server.keys import KeyStore
from tests.fixtures_db import create_database, drop_database
from tests.serve_helpers import Served, service_env, spawn_serve, start_serve, until, wait_exit
from tests.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

POOL_TIMEOUT_S = 1.0
"""The server's STEWARD_DB_POOL_TIMEOUT_S: requests wait this long for a connection."""
FAST_503_S = 5.0
"""A request during the outage must answer within this (the old pool timeout was 10 s)."""
OUTAGE_S = 20.0
MODEL_DELAY_S = 6.0
"""Each run's model call takes this long, so the outage starts while the runs are in flight."""
LEASE_S = 30.0
"""The default lease: it outlives the outage, so the executor itself must settle its runs."""
RUNS = 4
SETTLE_DEADLINE_S = 120.0
"""Bound for every run to end once the database is back (lease x 2 + generous slack)."""
TEST_APP = "steward-test-direct"
"""application_name of the test's own connections (straight to Postgres, never cut)."""
START_TIMEOUT_S = 240.0
"""The server loads its index and Presidio at start: slow on a loaded 2-core machine."""
QUESTION: Any = {"messages": [{"role": "user", "content": "How long is the return window?"}]}


@dataclass
class Sample:
    at: float
    rows: dict[str, dict[str, Any]]


@dataclass
class Watchdog:
    """Samples the runs rows every 0.5 s straight from Postgres (never through the proxy)."""

    pool: DbPool
    samples: list[Sample] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    async def _loop(self) -> None:
        while True:
            async with self.pool.connection() as conn:
                cur = await conn.execute(
                    "SELECT run_id::text AS run_id, thread_id::text AS thread_id, status,"
                    " worker_id, attempt, lease_expires_at, error FROM runs"
                )
                rows = {r["run_id"]: dict(r) for r in await cur.fetchall()}
            self.samples.append(Sample(time.monotonic(), rows))
            await asyncio.sleep(0.5)

    def start(self) -> None:
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    def latest(self) -> dict[str, dict[str, Any]]:
        return self.samples[-1].rows if self.samples else {}

    def stuck_after(self, since: float, grace_s: float) -> list[str]:
        """Runs still `running` `grace_s` after `since` whose lease kept being renewed."""
        found: list[str] = []
        later = [s for s in self.samples if s.at >= since + grace_s]
        if not later:
            return found
        for run_id, row in later[-1].rows.items():
            if row["status"] != "running":
                continue
            leases = {
                s.rows[run_id]["lease_expires_at"]
                for s in self.samples
                if s.at >= since and run_id in s.rows and s.rows[run_id]["status"] == "running"
            }
            found.append(
                f"{run_id} running {grace_s:.0f}s after the database came back "
                f"(attempt {row['attempt']}, {len(leases)} distinct leases)"
            )
        return found


def via_proxy(url: str, port: int) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{parts.username}@127.0.0.1:{port}"))


@pytest.fixture(scope="module", name="outage_db")
def fx_outage_db(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url, prefix="steward_outage")
    try:
        yield url
    finally:
        drop_database(pg_server_url, url)


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="outage_pool")
async def fx_outage_pool(outage_db: str) -> AsyncIterator[DbPool]:
    url = f"{outage_db}?application_name={TEST_APP}"
    settings = Settings(database_url=url, db_pool_min=1, db_pool_max=4)
    async with open_pool(url, settings) as pool:
        await migrate(pool, outage_db)
        await seed_demo_orders(pool)
        yield pool


@pytest.fixture(scope="module", name="proxy")
def fx_proxy(outage_db: str) -> Iterator[TcpProxy]:
    parts = urlsplit(outage_db)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture(scope="module", name="outage_server")
def fx_outage_server(
    outage_db: str,
    outage_pool: DbPool,
    proxy: TcpProxy,
    steward_home: Path,
    mock_llm: MockLLM,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    env = service_env(
        DATABASE_URL=via_proxy(outage_db, proxy.port),
        STEWARD_HOME=str(steward_home),
        OPENAI_BASE_URL=mock_llm.base_url,
        OPENAI_API_KEY="test-key",
        STEWARD_LLM_TIMEOUT_S="30",
        STEWARD_RUN_LEASE_S=str(LEASE_S),
        STEWARD_DB_POOL_TIMEOUT_S=str(POOL_TIMEOUT_S),
    )
    log_path = tmp_path_factory.mktemp("outage-server") / "server.log"
    server = start_serve(env, log_path, ready_within=START_TIMEOUT_S)
    try:
        yield server
    finally:
        server.stop()


async def terminate_backends(pool: DbPool, database_url: str) -> None:
    """What a Postgres restart does to the server's sessions (they get AdminShutdown)."""
    name = urlsplit(database_url).path.lstrip("/")
    async with pool.connection() as conn:
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()"
            " AND application_name <> %s",
            (name, TEST_APP),
        )


async def poll(what: str, check: Any, deadline_s: float, every_s: float = 0.25) -> float:
    """Await `check()` until truthy; returns the time it took (fails after `deadline_s`)."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < deadline_s, f"{what}: not after {deadline_s:.0f}s"
        await asyncio.sleep(every_s)
    return time.monotonic() - started


async def test_runs_in_flight_survive_a_database_outage(
    outage_server: Served,
    outage_pool: DbPool,
    outage_db: str,
    proxy: TcpProxy,
    mock_llm_clean: MockLLM,
) -> None:
    key = await KeyStore(outage_pool).create("olga", "t-outage", "user")
    http = httpx.AsyncClient(base_url=outage_server.url, headers={"x-api-key": key}, timeout=60)
    watchdog = Watchdog(outage_pool)
    try:
        await mock_llm_clean.add_faults(
            [{"kind": "timeout", "delay_s": MODEL_DELAY_S, "count": RUNS}]
        )
        threads: list[str] = []
        runs: list[str] = []
        for _ in range(RUNS):
            tid = (await http.post("/threads", json={})).json()["thread_id"]
            created = await http.post(
                f"/threads/{tid}/runs", json={"assistant_id": "agent", "input": QUESTION}
            )
            assert created.status_code == 200, created.text
            threads.append(tid)
            runs.append(created.json()["run_id"])
        # One more run queued behind the first: it must run once the database is back.
        queued = await http.post(
            f"/threads/{threads[0]}/runs", json={"assistant_id": "agent", "input": QUESTION}
        )
        assert queued.status_code == 200, queued.text
        runs.append(queued.json()["run_id"])
        watchdog.start()

        async def all_in_model_call() -> bool:
            return len(await mock_llm_clean.requests()) >= RUNS

        await poll("every run reached its slow model call", all_in_model_call, 120)

        # A client already waiting for a run keeps waiting through the outage.
        joining = asyncio.create_task(http.get(f"/threads/{threads[1]}/runs/{runs[1]}/join"))
        await asyncio.sleep(0.5)
        # The outage: sessions terminated as by a restart, then no connection at all.
        await terminate_backends(outage_pool, outage_db)
        proxy.cut()
        cut_at = time.monotonic()
        answers: list[tuple[str, int, float, Any]] = []
        restored = asyncio.Event()

        async def probe() -> None:
            """Requests during the outage; only those answered before the restore count."""
            while not restored.is_set():
                for method, path, body in (
                    ("GET", f"/threads/{threads[1]}", None),
                    (
                        "POST",
                        f"/threads/{threads[1]}/runs",
                        {"assistant_id": "agent", "input": QUESTION},
                    ),
                    ("GET", f"/threads/{threads[0]}/runs/{runs[0]}", None),
                    ("GET", "/readyz", None),
                ):
                    started = time.monotonic()
                    r = await http.request(method, path, json=body)
                    took = time.monotonic() - started
                    if not restored.is_set():
                        answers.append((f"{method} {path}", r.status_code, took, r.json()))
                await asyncio.sleep(0.5)

        prober = asyncio.create_task(probe())
        await asyncio.sleep(OUTAGE_S)
        proxy.restore()
        restored.set()
        restored_at = time.monotonic()

        async def answers_again() -> bool:
            return (await http.get(f"/threads/{threads[1]}")).status_code == 200

        to_first_success = await poll("a request succeeded again", answers_again, 60, 0.1)
        await prober

        async def all_terminal() -> bool:
            rows = watchdog.latest()
            return all(
                rows.get(r, {}).get("status") in ("success", "interrupted", "error", "timeout")
                for r in runs
            )

        try:
            await poll("every run ended", all_terminal, SETTLE_DEADLINE_S)
        finally:
            stuck = watchdog.stuck_after(restored_at, 0.0)
        to_all_terminal = time.monotonic() - restored_at

        joined = await joining
        assert joined.status_code == 200, joined.text
        assert joined.json().get("response"), joined.json()

        print(
            f"\noutage {OUTAGE_S:.0f}s: first success {to_first_success:.2f}s after the "
            f"database was back, every run ended after {to_all_terminal:.2f}s; 503 latency "
            f"max {max(a[2] for a in answers):.2f}s over {len(answers)} requests "
            f"(outage began {restored_at - cut_at:.1f}s before the restore)"
        )
        assert not stuck, stuck

        # Nothing ended `error` because the database blipped.
        final = watchdog.latest()
        errors = {r: final[r]["error"] for r in runs if final[r]["status"] == "error"}
        assert not errors, errors
        assert not [r for r, row in final.items() if row["status"] == "running"]

        # Requests during the outage: 503 with the service's error shape, quickly.
        assert answers
        for what, status, took, body in answers:
            assert status == 503, (what, status, body)
            assert isinstance(body, dict) and isinstance(body.get("detail"), str), body
            assert took < FAST_503_S, f"{what} took {took:.1f}s to answer 503"

        # Every thread accepts (and completes) a new run.
        for tid in threads:
            out = await http.post(
                f"/threads/{tid}/runs/wait", json={"assistant_id": "agent", "input": QUESTION}
            )
            assert out.status_code == 200, out.text
            assert out.json().get("response"), out.json()
        log = outage_server.log()
        assert "executor crashed" not in log
    finally:
        await watchdog.stop()
        await http.aclose()
        proxy.restore()


async def test_a_replica_started_during_an_outage_waits_for_the_database(
    outage_db: str,
    proxy: TcpProxy,
    steward_home: Path,
    mock_llm: MockLLM,
    tmp_path: Path,
) -> None:
    """A deploy or a failover restarts Postgres while a replica starts: it waits, then serves.

    The database is away when the process starts, comes back, and goes away again as soon as
    the pool has opened (migrations, the approval threshold, the dev key and the warm-up
    follow). The replica must neither exit nor need a restart.
    """
    env = service_env(
        DATABASE_URL=via_proxy(outage_db, proxy.port),
        STEWARD_HOME=str(steward_home),
        OPENAI_BASE_URL=mock_llm.base_url,
        OPENAI_API_KEY="test-key",
        STEWARD_DB_POOL_TIMEOUT_S=str(POOL_TIMEOUT_S),
    )
    proxy.cut()
    served = spawn_serve(env, tmp_path / "server.log")
    process = served.process

    async def log_text() -> str:
        assert process.poll() is None, f"steward serve exited:\n{served.log()[-6000:]}"
        return served.log()

    try:
        await until(
            log_text,
            lambda t: "the database is unreachable" in t,
            within=START_TIMEOUT_S,
            what="the pool tries the unreachable database",
            interval=0.2,
        )
        proxy.restore()
        await until(
            log_text,
            lambda t: "database pool open" in t,
            within=START_TIMEOUT_S,
            what="the pool opens once the database is back",
            interval=0.02,
        )
        proxy.cut()
        await asyncio.sleep(6.0)
        assert process.poll() is None, f"exited during the outage:\n{served.log()[-6000:]}"
        proxy.restore()

        async def ready() -> int:
            await log_text()
            async with httpx.AsyncClient(timeout=5.0) as http:
                try:
                    return (await http.get(f"{served.url}/readyz")).status_code
                except httpx.HTTPError:
                    return 0

        await until(
            ready,
            lambda code: code == 200,
            within=START_TIMEOUT_S,
            what="ready once the database is back",
            interval=0.25,
        )
    finally:
        proxy.restore()
        served.stop()


async def test_a_database_that_refuses_the_connection_fails_the_start_at_once(
    pg_server_url: str, steward_home: Path, mock_llm: MockLLM, tmp_path: Path
) -> None:
    """A wrong database name is a setting to fix: no waiting out an "outage", its own message."""
    missing = urlunsplit(urlsplit(pg_server_url)._replace(path="/steward_no_such_database"))
    env = service_env(
        DATABASE_URL=missing,
        STEWARD_HOME=str(steward_home),
        OPENAI_BASE_URL=mock_llm.base_url,
        OPENAI_API_KEY="test-key",
    )
    served = spawn_serve(env, tmp_path / "server.log")
    try:
        # Well under STEWARD_DB_STARTUP_TIMEOUT_S (120 s): only the imports take time.
        code = await wait_exit(served.process, within=90.0)
        assert code not in (None, 0), f"still running or exited 0:\n{served.log()[-4000:]}"
        assert 'database "steward_no_such_database" does not exist' in served.log()
        assert "retrying" not in served.log() and "error connecting" not in served.log()
    finally:
        served.stop()
