"""Chaos harness: two replicas on one throwaway Postgres, faults, kills, a database restart.

Setup: a private PostgreSQL cluster (`pgcluster.PgCluster`, so it may be restarted), a
migrated database with the demo orders plus high-balance orders `LS-9000x`, the mock LLM,
two `steward serve` replicas (3 s run lease, 3 s model timeout) and keys for a user, an
approver and an admin of one tenant.

While the chaos lasts, `clients` concurrent clients each run jobs on fresh threads: a policy
question, a refund under the $500 threshold, or one above it (the approver then finds the
approval through `GET /approvals` and approves or rejects it through the decision API); each
run is streamed live (SSE, `values` + `updates`, resumable, reconnecting with
`Last-Event-ID`), created in the background and joined, or waited for. Every request goes to
a replica that is up and is retried on another one (creates carry an `Idempotency-Key`).

A schedule drawn from `seed` (printed, reproducible) SIGKILLs a replica (preferably one that
holds a running run) and restarts it, restarts Postgres (`pg_ctl stop -m fast|immediate`,
down a few seconds) and queues LLM faults in the mock (500/502/503, 429 with Retry-After,
timeouts longer than the model timeout).

Then: every replica up, no new work, wait (bounded) until no run is pending or running, and
check against the database:

- runs: every run terminal (success / error / interrupted); no thread left `busy`;
- events: per run, seq gapless from 0, seq 0 the `metadata` event of attempt 1, later
  `metadata` events only for later attempts; the final event matches the run's status and
  output (success: `values` with the stored `response`, and exactly one `finalize` update when
  updates were streamed; error: the stored error; interrupted: the waiting interrupts); no
  `updates` event stored twice; a replay (`GET .../stream`, `Last-Event-ID: -1`) returns
  exactly the stored events; every live stream received exactly the stored events (a prefix
  of them, and all of them when it ended cleanly);
- refunds: one per approval action and per thread (one request per thread), none above the
  threshold without a released approval action naming it, made by the approval's resume run;
  none on a rejected approval; every `executed` refund a run reported exists;
- approvals: every pending approval's interrupt waits on its thread, every waiting approval
  interrupt has exactly one pending approval, every decided approval's resume run exists;
- HTTP: no 500 on any request (503 while the database is down is expected).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.rows import dict_row

from core.db.migrate import migrate
from core.db.pool import open_pool
from core.domain.seed import seed_demo_orders
from core.settings import Settings
from mock_llm.process import MockLLM, free_port, running_mock_llm
from server.keys import KeyStore
from tests.chaos.pgcluster import PgCluster
from tests.chaos.sse import read_events

ROOT = Path(__file__).resolve().parents[2]
TENANT = "chaos"
THRESHOLD_CENTS = 50_000
BIG_ORDERS = [f"LS-9000{i}" for i in range(1, 9)]
SMALL_ORDERS = ["LS-10011", "LS-10012", "LS-10014", "LS-10020", "LS-10023", *BIG_ORDERS]
QUESTIONS = [
    "How long is the return window?",
    "What is the shipping policy for damaged items?",
    "Can I return an opened item?",
]
STREAM_MODE = ["values", "updates"]
TERMINAL = {"success", "error", "interrupted", "timeout"}
READY_TIMEOUT_S = 120.0
REQUEST_TIMEOUT_S = 40.0


@dataclass(frozen=True)
class ChaosConfig:
    """What one chaos run does; `from_env()` reads `STEWARD_CHAOS_*`."""

    duration_s: float = 45.0
    seed: int = 9
    clients: int = 4
    lease_s: float = 3.0
    llm_timeout_s: float = 3.0
    quiesce_s: float = 150.0
    pg_restarts: int = 1

    @classmethod
    def from_env(cls, *, default_duration_s: float, default_seed: int | None) -> ChaosConfig:
        """`STEWARD_CHAOS_DURATION_S`, `STEWARD_CHAOS_SEED` (empty: random), `..._CLIENTS`."""
        raw_seed = os.environ.get("STEWARD_CHAOS_SEED", "").strip()
        if raw_seed:
            seed = int(raw_seed)
        elif default_seed is not None:
            seed = default_seed
        else:
            seed = random.SystemRandom().randrange(1, 1_000_000)
        duration = float(os.environ.get("STEWARD_CHAOS_DURATION_S") or default_duration_s)
        return cls(
            duration_s=duration,
            seed=seed,
            clients=int(os.environ.get("STEWARD_CHAOS_CLIENTS") or 4),
            pg_restarts=int(
                os.environ.get("STEWARD_CHAOS_PG_RESTARTS") or max(1, int(duration // 100))
            ),
        )


# --------------------------------------------------------------------------- schedule


@dataclass(frozen=True)
class Event:
    """One scheduled disturbance, `at` seconds after the chaos started."""

    at: float
    kind: str  # kill | pg_restart | fault
    params: dict[str, Any]

    def describe(self) -> str:
        return f"{self.at:6.1f}s {self.kind} {json.dumps(self.params, sort_keys=True)}"


def make_schedule(config: ChaosConfig) -> list[Event]:
    """The disturbances, drawn from the seed alone (the same seed, the same schedule)."""
    rng = random.Random(config.seed)
    d = config.duration_s
    events: list[Event] = []
    kills = max(2, int(d / 35))  # a replica needs 20-60 s to start on a loaded machine
    for _ in range(kills):
        events.append(
            Event(
                round(rng.uniform(5.0, d - 5.0), 1),
                "kill",
                {
                    "prefer_holder": rng.random() < 0.75,
                    "pick": rng.random(),
                    "restart_after_s": round(rng.uniform(0.5, 3.0), 1),
                },
            )
        )
    for i in range(config.pg_restarts):
        lo, hi = d * (i + 0.3) / config.pg_restarts, d * (i + 0.7) / config.pg_restarts
        events.append(
            Event(
                round(rng.uniform(lo, hi), 1),
                "pg_restart",
                {
                    "mode": rng.choice(["fast", "immediate"]),
                    "down_s": round(rng.uniform(2.0, 5.0), 1),
                },
            )
        )
    t = 2.0
    first = [0.1, 0.5, 0.9]  # every schedule has a 5xx, a 429 and a timeout early on
    while t < d - 3.0:
        roll = first.pop(0) if first else rng.random()
        if roll < 0.35:
            fault: dict[str, Any] = {
                "kind": "status",
                "status": rng.choice([500, 502, 503]),
                "count": rng.choice([1, 1, 2]),
            }
        elif roll < 0.65:
            fault = {"kind": "status", "status": 429, "retry_after": rng.choice([1, 2]), "count": 1}
        else:
            fault = {"kind": "timeout", "delay_s": config.llm_timeout_s + 1.5, "count": 1}
        events.append(Event(round(t, 1), "fault", fault))
        t += rng.uniform(1.5, 4.0)
    return sorted(events, key=lambda e: (e.at, e.kind))


# --------------------------------------------------------------------------- processes


@dataclass
class Replica:
    """One `steward serve` process slot: the same port across restarts, one log."""

    name: str
    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    up: bool = False
    starts: int = 0
    spawned: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def spawn(self) -> None:
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError(f"replica {self.name} is still running (pid {self.process.pid})")
        with self.log_path.open("ab") as log:
            log.write(
                f"\n===== chaos: start #{self.starts + 1} of replica {self.name} "
                f"at {time.strftime('%H:%M:%S')} =====\n".encode()
            )
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "steward", "serve", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.spawned.append(self.process)
        self.starts += 1

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        async with httpx.AsyncClient(timeout=3.0) as http:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"replica {self.name} exited {self.process.returncode}:\n{self.tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        self.up = True
                        return
                await asyncio.sleep(0.25)
        raise RuntimeError(
            f"replica {self.name} not ready in {READY_TIMEOUT_S:.0f}s:\n{self.tail()}"
        )

    def kill(self) -> None:
        self.up = False
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM every process this slot ever started that still runs, SIGKILL leftovers."""
        self.up = False
        alive = [p for p in self.spawned if p.poll() is None]
        for process in alive:
            process.terminate()
        for process in alive:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def tail(self, lines: int = 60) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def replica_env(db_url: str, home: Path, mock: MockLLM, config: ChaosConfig) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "OPENAI_", "STEWARD_"))
    }
    env.update(
        {
            "DATABASE_URL": db_url,
            "STEWARD_HOME": str(home),
            "STEWARD_ENV": "development",
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_API_KEY": "chaos",
            "STEWARD_LLM_TIMEOUT_S": str(config.llm_timeout_s),
            "STEWARD_RUN_LEASE_S": str(config.lease_s),
            "STEWARD_RUN_SHUTDOWN_GRACE_S": "5",
            "STEWARD_RATE_LIMIT_PER_MINUTE": "0",
            "STEWARD_BUDGET_USER_DAY_USD": "100000",
            "STEWARD_BUDGET_TENANT_MONTH_USD": "100000",
            "STEWARD_BUDGET_THREAD_USD": "100000",
            "STEWARD_DB_POOL_MAX": "12",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
            "PYTHONUNBUFFERED": "1",
            "PYTHONPATH": os.pathsep.join(
                dict.fromkeys(
                    [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
                )
            ),
        }
    )
    return env


# --------------------------------------------------------------------------- records


@dataclass
class LiveStream:
    """What one client received for one run over SSE (across reconnects)."""

    run_id: str | None = None
    events: list[tuple[int | None, str, Any]] = field(default_factory=list)
    reconnects: int = 0
    ended_cleanly: bool = False


@dataclass
class Job:
    """One client job: a thread, its request, the runs it started and what it saw."""

    client: int
    number: int
    kind: str  # question | small | large
    mode: str  # stream | background | wait
    thread_id: str
    text: str
    order: str | None = None
    amount_cents: int | None = None
    decision: str | None = None
    edited_cents: int | None = None
    approval_id: str | None = None
    held_args: dict[str, Any] | None = None
    run_ids: list[str] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    live: dict[str, LiveStream] = field(default_factory=dict)
    done: bool = False
    gave_up: str | None = None


@dataclass
class Violation:
    """One invariant that did not hold, with the evidence."""

    invariant: str
    detail: str
    run_ids: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        runs = f" [runs {', '.join(self.run_ids)}]" if self.run_ids else ""
        return f"{self.invariant}: {self.detail}{runs}"


class GiveUp(Exception):
    """The job's deadline passed while a request kept failing."""


# --------------------------------------------------------------------------- the run


class Chaos:
    """One chaos run; `await Chaos(config, home, workdir).run()` returns the summary."""

    def __init__(self, config: ChaosConfig, home: Path, workdir: Path) -> None:
        self.config = config
        self.home = home
        self.workdir = workdir
        self.schedule = make_schedule(config)
        self.rng = random.Random(config.seed * 7919 + 1)
        self.replicas: list[Replica] = []
        self.pg: PgCluster | None = None
        self.db_url = ""
        self.mock: MockLLM | None = None
        self.keys: dict[str, str] = {}
        self.jobs: list[Job] = []
        self.violations: list[Violation] = []
        self.notes: list[str] = []
        self.counts: Counter[str] = Counter()
        self.http_errors: Counter[str] = Counter()
        self.server_errors: list[str] = []
        self.faults_queued: Counter[str] = Counter()
        self.chaos_over = asyncio.Event()
        self._kill_lock = asyncio.Lock()
        self.hard_deadline = 0.0
        self.pg_down = False
        self.pg_back_to_success_s: float | None = None
        self._pg_back_at: float | None = None
        self.timeline: list[str] = []
        self.t0 = 0.0

    def log(self, message: str) -> None:
        line = f"[chaos {time.monotonic() - self.t0:7.1f}s] {message}" if self.t0 else message
        self.timeline.append(line)
        print(line, flush=True)

    # ------------------------------------------------------------------ setup / teardown

    async def setup(self) -> None:
        self.pg = await asyncio.to_thread(PgCluster.create)
        await asyncio.to_thread(self.pg.start)
        with psycopg.connect(self.pg.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE steward_chaos")
        self.db_url = self.pg.url("steward_chaos")
        settings = Settings(database_url=self.db_url, db_pool_min=1, db_pool_max=2)
        async with open_pool(self.db_url, settings) as pool:
            await migrate(pool, self.db_url)
            await seed_demo_orders(pool)
            async with pool.connection() as conn:
                for order_id in BIG_ORDERS:
                    await conn.execute(
                        "INSERT INTO orders (order_id, customer_name, customer_email, status,"
                        " currency, total_cents, items) VALUES (%s, 'Chaos Customer',"
                        " 'chaos@example.com', 'delivered', 'USD', 10000000, '[]'::jsonb)",
                        (order_id,),
                    )
            store = KeyStore(pool)
            self.keys = {
                "user": await store.create("chaos-user", TENANT, "user"),
                "approver": await store.create("chaos-approver", TENANT, "approver"),
                "admin": await store.create("chaos-admin", TENANT, "admin"),
            }

    def start_mock(self, stack: contextlib.ExitStack) -> None:
        self.mock = stack.enter_context(running_mock_llm())

    async def start_replicas(self) -> None:
        assert self.mock is not None
        env = replica_env(self.db_url, self.home, self.mock, self.config)
        for name in ("a", "b"):
            replica = Replica(name, free_port(), env, self.workdir / f"replica-{name}.log")
            replica.spawn()
            self.replicas.append(replica)
        for replica in self.replicas:
            await replica.wait_ready()

    def teardown(self) -> None:
        for replica in self.replicas:
            with contextlib.suppress(Exception):
                replica.stop()
        if self.pg is not None:
            with contextlib.suppress(Exception):
                self.pg.destroy()

    # ------------------------------------------------------------------ HTTP with retries

    def _up(self) -> list[Replica]:
        return [r for r in self.replicas if r.up]

    async def request(
        self,
        http: httpx.AsyncClient,
        method: str,
        path: str,
        key: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> httpx.Response:
        """Send until a replica answers below 500 (or the hard deadline passes)."""
        delay = 0.2
        while True:
            if time.monotonic() > self.hard_deadline:
                raise GiveUp(f"{method} {path}: deadline passed")
            up = self._up()
            if not up:
                await asyncio.sleep(0.3)
                continue
            replica = self.rng.choice(up)
            try:
                r = await http.request(
                    method,
                    replica.url + path,
                    json=json_body,
                    params=params,
                    timeout=REQUEST_TIMEOUT_S,
                    headers={"x-api-key": key, **(headers or {})},
                )
            except httpx.HTTPError as exc:
                self.http_errors[f"transport {type(exc).__name__}"] += 1
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 2.0)
                continue
            self.counts["http_requests"] += 1
            if r.status_code >= 500:
                self.http_errors[f"http {r.status_code}"] += 1
                if r.status_code not in (502, 503, 504):
                    self.server_errors.append(
                        f"{method} {path} on replica {replica.name} -> {r.status_code}:"
                        f" {r.text[:500]}"
                    )
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 2.0)
                continue
            if r.status_code in ok:
                self._maybe_first_success()
            return r

    def _maybe_first_success(self) -> None:
        if self._pg_back_at is not None and self.pg_back_to_success_s is None:
            self.pg_back_to_success_s = time.monotonic() - self._pg_back_at

    async def follow_stream(
        self,
        http: httpx.AsyncClient,
        job: Job,
        live: LiveStream,
        *,
        create: dict[str, Any] | None,
        idem: str | None,
    ) -> None:
        """Read a run's SSE stream to its end: POST .../runs/stream (create) or GET .../stream,
        reconnecting with `Last-Event-ID` (to any replica) whenever the connection breaks.
        """
        delay = 0.2
        while True:
            if time.monotonic() > self.hard_deadline:
                raise GiveUp(f"stream of {live.run_id or 'a new run'}: deadline passed")
            up = self._up()
            if not up:
                await asyncio.sleep(0.3)
                continue
            replica = self.rng.choice(up)
            headers = {"x-api-key": self.keys["admin" if create is None else "user"]}
            if live.run_id is None:
                assert create is not None and idem is not None
                method, path = "POST", f"/threads/{job.thread_id}/runs/stream"
                headers["Idempotency-Key"] = idem
                body: Any = create
            else:
                method, path = "GET", f"/threads/{job.thread_id}/runs/{live.run_id}/stream"
                # Resumable runs send ids (the seq); others (a decision's resume run) do not,
                # and their seq is the position in the gapless stream.
                last = live.events[-1][0] if live.events else None
                if last is None:
                    last = len(live.events) - 1
                headers["Last-Event-ID"] = str(last)
                body = None
            try:
                async with http.stream(
                    method,
                    replica.url + path,
                    json=body,
                    headers=headers,
                    timeout=httpx.Timeout(REQUEST_TIMEOUT_S, read=30.0),
                ) as r:
                    self.counts["http_requests"] += 1
                    if r.status_code >= 500:
                        text = (await r.aread()).decode(errors="replace")
                        self.http_errors[f"http {r.status_code}"] += 1
                        if r.status_code not in (502, 503, 504):
                            self.server_errors.append(
                                f"{method} {path} on replica {replica.name} ->"
                                f" {r.status_code}: {text[:500]}"
                            )
                        raise httpx.TransportError(f"status {r.status_code}")
                    if r.status_code != 200:
                        text = (await r.aread()).decode(errors="replace")
                        raise GiveUp(f"{method} {path} -> {r.status_code}: {text[:300]}")
                    async for ev in read_events(r):
                        if ev.event == "metadata" and live.run_id is None:
                            live.run_id = str(ev.data["run_id"])
                        live.events.append((ev.id, ev.event, ev.data))
                    live.ended_cleanly = True
                    self._maybe_first_success()
                    return
            except httpx.HTTPError as exc:
                self.http_errors[f"stream {type(exc).__name__}"] += 1
                live.reconnects += 1
                await asyncio.sleep(delay)
                delay = min(delay * 1.5, 2.0)

    # ------------------------------------------------------------------ jobs

    def _new_job(self, client: int, number: int, rng: random.Random) -> Job:
        roll = rng.random()
        kind = "question" if roll < 0.2 else ("small" if roll < 0.55 else "large")
        mode = rng.choice(["stream", "stream", "background", "wait"])
        tid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        job = Job(client, number, kind, mode, tid, rng.choice(QUESTIONS))
        if kind != "question":
            if kind == "small":
                job.order = rng.choice(SMALL_ORDERS)
                dollars = rng.randint(5, 15)
            else:
                job.order = rng.choice(BIG_ORDERS)
                dollars = rng.randint(510, 900)
            job.amount_cents = dollars * 100
            job.text = f"Refund ${dollars} on {job.order} please."
            if kind == "large":
                roll = rng.random()
                job.decision = "approve" if roll < 0.6 else ("edit" if roll < 0.75 else "reject")
                if job.decision == "edit":  # a smaller amount, still above the threshold
                    job.edited_cents = (dollars - 5) * 100
        return job

    async def run_once(
        self, http: httpx.AsyncClient, job: Job, *, step: str, body: dict[str, Any]
    ) -> tuple[str, Any]:
        """Create a run in the job's mode and return `(run_id, final output or last event)`."""
        idem = f"chaos-{self.config.seed}-{job.client}-{job.number}-{step}"
        tid = job.thread_id
        if job.mode == "stream":
            live = LiveStream()
            await self.follow_stream(http, job, live, create=body, idem=idem)
            assert live.run_id is not None
            job.live[live.run_id] = live
            return live.run_id, live.events[-1][2] if live.events else None
        if job.mode == "background":
            r = await self.request(
                http,
                "POST",
                f"/threads/{tid}/runs",
                self.keys["user"],
                json_body=body,
                headers={"Idempotency-Key": idem},
            )
            if r.status_code != 200:
                raise GiveUp(f"create run -> {r.status_code}: {r.text[:300]}")
            run_id = str(r.json()["run_id"])
            out = await self.join(http, tid, run_id)
            return run_id, out
        r = await self.request(
            http,
            "POST",
            f"/threads/{tid}/runs/wait",
            self.keys["user"],
            json_body=body,
            headers={"Idempotency-Key": idem},
        )
        if r.status_code != 200:
            raise GiveUp(f"wait -> {r.status_code}: {r.text[:300]}")
        location = r.headers.get("content-location", "")
        run_id = location.rstrip("/").rsplit("/", 1)[-1]
        return run_id, r.json()

    async def join(self, http: httpx.AsyncClient, tid: str, run_id: str) -> Any:
        while True:
            r = await self.request(
                http, "GET", f"/threads/{tid}/runs/{run_id}/join", self.keys["admin"]
            )
            if r.status_code != 200:
                raise GiveUp(f"join {run_id} -> {r.status_code}: {r.text[:300]}")
            try:
                return r.json()
            except ValueError:  # the replica died mid-answer: join again
                self.http_errors["join cut short"] += 1

    async def find_approval(self, http: httpx.AsyncClient, job: Job) -> str | None:
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            r = await self.request(
                http,
                "GET",
                "/approvals",
                self.keys["approver"],
                params={"status": "pending", "limit": 500},
            )
            mine = [a for a in r.json() if a.get("thread_id") == job.thread_id]
            if mine:
                requests = (mine[0].get("action") or {}).get("action_requests") or [{}]
                job.held_args = dict(requests[0].get("args") or {})
                return str(mine[0]["approval_id"])
            await asyncio.sleep(0.3)
        return None

    async def decide(self, http: httpx.AsyncClient, job: Job) -> str | None:
        """Decide the job's approval; returns the resume run id."""
        assert job.approval_id is not None
        decision: dict[str, Any] = {"type": job.decision}
        if job.decision == "edit":
            assert job.edited_cents is not None
            args = {**(job.held_args or {}), "amount": f"{job.edited_cents / 100:.2f}"}
            decision["edited_action"] = {"name": "issue_refund", "args": args}
        r = await self.request(
            http,
            "POST",
            f"/approvals/{job.approval_id}/decision",
            self.keys["approver"],
            json_body=decision,
            ok=(200, 409),
        )
        if r.status_code == 200:
            return str(r.json()["run"]["run_id"])
        if r.status_code == 409:  # our earlier attempt was recorded, its answer lost
            got = await self.request(
                http, "GET", f"/approvals/{job.approval_id}", self.keys["approver"]
            )
            resume = got.json().get("resume_run_id")
            self.notes.append(
                f"job {job.client}.{job.number}: decision re-sent, 409; approval"
                f" {job.approval_id} is {got.json().get('status')}"
            )
            return str(resume) if resume else None
        raise GiveUp(f"decision -> {r.status_code}: {r.text[:300]}")

    async def do_job(self, http: httpx.AsyncClient, job: Job) -> None:
        r = await self.request(
            http,
            "POST",
            "/threads",
            self.keys["user"],
            json_body={"thread_id": job.thread_id, "if_exists": "do_nothing"},
        )
        if r.status_code != 200:
            raise GiveUp(f"create thread -> {r.status_code}: {r.text[:300]}")
        body = {
            "assistant_id": "agent",
            "stream_mode": STREAM_MODE,
            "stream_resumable": True,
            "input": {"messages": [{"role": "user", "content": job.text}]},
        }
        run_id, out = await self.run_once(http, job, step="ask", body=body)
        job.run_ids.append(run_id)
        job.outputs[run_id] = out
        self.counts[f"runs_{job.mode}"] += 1
        if job.kind != "large" or not (isinstance(out, dict) and "__interrupt__" in out):
            return
        job.approval_id = await self.find_approval(http, job)
        if job.approval_id is None:
            self.notes.append(
                f"job {job.client}.{job.number}: interrupted run {run_id}, but no"
                " pending approval appeared within 30 s"
            )
            return
        resume = await self.decide(http, job)
        if resume is None:
            return
        job.run_ids.append(resume)
        self.counts[f"decisions_{job.decision}"] += 1
        if job.mode == "stream":
            live = LiveStream(run_id=resume)
            await self.follow_stream(http, job, live, create=None, idem=None)
            job.live[resume] = live
            job.outputs[resume] = live.events[-1][2] if live.events else None
        else:
            job.outputs[resume] = await self.join(http, job.thread_id, resume)

    async def client_loop(self, client: int) -> None:
        rng = random.Random(self.config.seed * 1000 + client)
        number = 0
        limits = httpx.Limits(max_connections=8, max_keepalive_connections=0)
        async with httpx.AsyncClient(limits=limits) as http:
            while not self.chaos_over.is_set():
                number += 1
                job = self._new_job(client, number, rng)
                self.jobs.append(job)
                try:
                    await self.do_job(http, job)
                    job.done = True
                except GiveUp as exc:
                    job.gave_up = str(exc)
                    self.notes.append(
                        f"job {client}.{number} ({job.kind}/{job.mode}, thread"
                        f" {job.thread_id}) gave up: {exc}"
                    )
                    if time.monotonic() > self.hard_deadline:
                        return

    # ------------------------------------------------------------------ disturbances

    async def kill(self, event: Event) -> None:
        """SIGKILL one replica and restart it; kills are serialised (one replica down at most)."""
        async with self._kill_lock:
            if self.chaos_over.is_set():
                self.counts["kills_skipped"] += 1
                return
            await self._kill(event)

    async def _kill(self, event: Event) -> None:
        if len(self._up()) < len(self.replicas):
            self.log(f"kill skipped: a replica is still down ({event.describe()})")
            self.counts["kills_skipped"] += 1
            return
        victim = None
        if event.params["prefer_holder"]:
            holders = await self.holders()
            candidates = [r for r in self.replicas if r.process and r.process.pid in holders]
            if candidates:
                victim = candidates[int(event.params["pick"] * len(candidates))]
        if victim is None:
            victim = self.replicas[int(event.params["pick"] * len(self.replicas))]
        held = (await self.holders()).get(victim.process.pid if victim.process else -1, [])
        victim.kill()
        self.counts["kills"] += 1
        self.log(
            f"SIGKILL replica {victim.name} (holding runs {held or 'none'}); restart in"
            f" {event.params['restart_after_s']}s"
        )
        await asyncio.sleep(event.params["restart_after_s"])
        victim.spawn()
        await victim.wait_ready()
        self.counts["replica_restarts"] += 1
        self.log(f"replica {victim.name} is back")

    async def holders(self) -> dict[int, list[str]]:
        """pid -> run ids of the runs each replica process is executing now."""
        out: dict[int, list[str]] = {}
        with contextlib.suppress(psycopg.Error):
            async with await psycopg.AsyncConnection.connect(
                self.db_url, connect_timeout=3
            ) as conn:
                cur = await conn.execute(
                    "SELECT run_id, worker_id FROM runs WHERE status = 'running'"
                )
                for run_id, worker in await cur.fetchall():
                    with contextlib.suppress(ValueError, IndexError):
                        out.setdefault(int(str(worker).split(":")[1]), []).append(str(run_id))
        return out

    async def pg_restart(self, event: Event) -> None:
        assert self.pg is not None
        mode, down = event.params["mode"], float(event.params["down_s"])
        self.log(f"Postgres stop -m {mode}, down {down}s")
        self.pg_down = True
        await asyncio.to_thread(self.pg.stop, mode)
        await asyncio.sleep(down)
        await asyncio.to_thread(self.pg.start)
        self.pg.restarts += 1
        self.pg_down = False
        self._pg_back_at = time.monotonic()
        self.pg_back_to_success_s = None
        self.counts["pg_restarts"] += 1
        self.log("Postgres is back")

    async def fault(self, event: Event) -> None:
        assert self.mock is not None
        with contextlib.suppress(httpx.HTTPError):
            await self.mock.add_faults([event.params])
            label = (
                f"{event.params['kind']} {event.params.get('status', '')}".strip()
                if event.params["kind"] == "status"
                else "timeout"
            )
            self.faults_queued[label] += int(event.params.get("count", 1))

    async def chaos_loop(self) -> None:
        started = time.monotonic()
        background: list[asyncio.Task[None]] = []
        for event in self.schedule:
            wait = started + event.at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if event.kind == "fault":
                await self.fault(event)
            elif event.kind == "kill":
                background.append(asyncio.create_task(self.kill(event)))
            else:
                background.append(asyncio.create_task(self.pg_restart(event)))
        rest = started + self.config.duration_s - time.monotonic()
        if rest > 0:
            await asyncio.sleep(rest)
        self.chaos_over.set()
        await asyncio.gather(*background)
        assert self.mock is not None
        with contextlib.suppress(httpx.HTTPError):
            await self.mock.clear_faults()
        for replica in self.replicas:  # every replica up for the quiescence
            if not replica.up:
                if replica.process is None or replica.process.poll() is not None:
                    replica.spawn()
                await replica.wait_ready()
        self.log("chaos over: no new jobs, faults cleared, both replicas up")

    # ------------------------------------------------------------------ quiescence

    async def quiesce(self) -> list[dict[str, Any]]:
        """Wait (bounded) until no run is pending or running; return the ones that still are."""
        deadline = time.monotonic() + self.config.quiesce_s
        active: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            with contextlib.suppress(psycopg.Error):
                active = self.query(
                    "SELECT run_id::text, thread_id::text, status, attempt, worker_id,"
                    " lease_expires_at, now() - updated_at AS idle FROM runs"
                    " WHERE status IN ('pending', 'running') ORDER BY created_at"
                )
                if not active:
                    return []
            await asyncio.sleep(1.0)
        return active

    def query(self, sql: str, params: Any = ()) -> list[dict[str, Any]]:
        with psycopg.connect(self.db_url, row_factory=dict_row, connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())

    # ------------------------------------------------------------------ main

    async def run(self) -> dict[str, Any]:
        started = time.monotonic()
        print(
            f"chaos: seed {self.config.seed}, duration {self.config.duration_s:.0f}s,"
            f" {self.config.clients} clients; schedule:",
            flush=True,
        )
        for event in self.schedule:
            print(f"  {event.describe()}", flush=True)
        loop, task = asyncio.get_running_loop(), asyncio.current_task()
        if task is not None:  # SIGTERM (e.g. `timeout`) still stops every process we started
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.ExitStack() as stack:
            stack.callback(loop.remove_signal_handler, signal.SIGTERM)
            try:
                await self.setup()
                self.start_mock(stack)
                await self.start_replicas()
                self.t0 = time.monotonic()
                self.hard_deadline = self.t0 + self.config.duration_s + self.config.quiesce_s
                self.log(
                    f"setup done in {self.t0 - started:.1f}s; replicas"
                    f" {[r.url for r in self.replicas]}; database {self.db_url}"
                )
                clients = [
                    asyncio.create_task(self.client_loop(i)) for i in range(self.config.clients)
                ]
                await self.chaos_loop()
                await asyncio.gather(*clients)
                self.log(f"clients done ({len(self.jobs)} jobs)")
                stuck = await self.quiesce()
                self.log("quiescent" if not stuck else f"{len(stuck)} run(s) still active")
                from tests.chaos.invariants import check

                await check(self, stuck)
                stats = await self.mock.stats() if self.mock else {}
                summary = self.summary(stats, time.monotonic() - started)
                if self.violations:
                    summary["artifacts"] = str(self.save_artifacts(summary))
                return summary
            finally:
                self.teardown()

    def save_artifacts(self, summary: dict[str, Any]) -> Path:
        """Keep the evidence outside pytest's rotating tmp dirs: logs, violations, and the
        runs, events and approvals of every violating run (`STEWARD_CHAOS_ARTIFACTS`, default
        `$TMPDIR/steward-chaos-<seed>-<time>`).
        """
        import shutil
        import tempfile

        base = os.environ.get("STEWARD_CHAOS_ARTIFACTS") or tempfile.gettempdir()
        out = Path(base) / f"steward-chaos-{self.config.seed}-{time.strftime('%Y%m%dT%H%M%S')}"
        out.mkdir(parents=True, exist_ok=True)
        for replica in self.replicas:
            if replica.log_path.exists():
                shutil.copy(replica.log_path, out / replica.log_path.name)
        if self.pg is not None and self.pg.log.exists():
            shutil.copy(self.pg.log, out / "postgres.log")
        run_ids = sorted({r for v in self.violations for r in v.run_ids})
        evidence: dict[str, Any] = {
            "summary": summary,
            "timeline": self.timeline,
            "violations": [str(v) for v in self.violations],
            "runs": {},
        }
        for run_id in run_ids:
            with contextlib.suppress(psycopg.Error, ValueError):
                evidence["runs"][run_id] = {
                    "run": self.query(
                        "SELECT run_id::text, thread_id::text, status, attempt, worker_id,"
                        " kwargs, output, error, created_at, updated_at FROM runs"
                        " WHERE run_id = %s",
                        (run_id,),
                    ),
                    "events": self.query(
                        "SELECT seq, event, data FROM run_events WHERE run_id = %s ORDER BY seq",
                        (run_id,),
                    ),
                    "approvals": self.query(
                        "SELECT * FROM approvals WHERE run_id = %s OR resume_run_id = %s",
                        (run_id, run_id),
                    ),
                    "refunds": self.query("SELECT * FROM refunds WHERE run_id = %s", (run_id,)),
                }
        (out / "evidence.json").write_text(json.dumps(evidence, indent=1, default=str))
        return out

    def summary(self, stats: dict[str, Any], took: float) -> dict[str, Any]:
        runs = (
            self.query("SELECT status, count(*) AS n FROM runs GROUP BY 1")
            if self.pg and self.pg.running()
            else []
        )
        return {
            "seed": self.config.seed,
            "duration_s": self.config.duration_s,
            "wall_s": round(took, 1),
            "jobs": len(self.jobs),
            "jobs_done": sum(j.done for j in self.jobs),
            "runs": {r["status"]: r["n"] for r in runs},
            "kills": self.counts["kills"],
            "kills_skipped": self.counts["kills_skipped"],
            "replica_restarts": self.counts["replica_restarts"],
            "pg_restarts": self.counts["pg_restarts"],
            "pg_back_to_first_success_s": (
                round(self.pg_back_to_success_s, 2)
                if self.pg_back_to_success_s is not None
                else None
            ),
            "faults_queued": dict(self.faults_queued),
            "faults_served": stats.get("faults_served"),
            "faults_by_kind": stats.get("faults_by_kind"),
            "llm_requests": stats.get("requests"),
            "decisions": {k: self.counts[f"decisions_{k}"] for k in ("approve", "edit", "reject")},
            "modes": {k: self.counts[f"runs_{k}"] for k in ("stream", "background", "wait")},
            "http_requests": self.counts["http_requests"],
            "http_retries": dict(self.http_errors),
            "violations": len(self.violations),
        }


def print_report(chaos: Chaos, summary: dict[str, Any]) -> None:
    """The summary, the notes and every violation."""
    print("\n===== chaos summary =====")
    for key, value in summary.items():
        print(f"  {key}: {value}")
    if chaos.notes:
        print(f"\nnotes ({len(chaos.notes)}):")
        for note in chaos.notes[:60]:
            print(f"  - {note}")
    if chaos.violations:
        print(f"\nVIOLATIONS ({len(chaos.violations)}):")
        for v in chaos.violations:
            print(f"  - {v}")
    print(
        f"\nreproduce: STEWARD_CHAOS_SEED={chaos.config.seed}"
        f" STEWARD_CHAOS_DURATION_S={chaos.config.duration_s:g} make chaos",
        flush=True,
    )


__all__ = [
    "Chaos",
    "ChaosConfig",
    "Job",
    "LiveStream",
    "Violation",
    "make_schedule",
    "print_report",
]
