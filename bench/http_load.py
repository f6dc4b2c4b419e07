"""HTTP load: `steward serve`, `langgraph dev` and Aegra serving the same graph, same run.

One iteration = `POST /threads {}` then `POST /threads/{id}/runs/wait` (assistant `agent`, one
user question). It is OK only if the wait answers 200 with a `response` that has non-empty
`sources`; anything else is an error (counted by kind). For every (mock LLM latency, server,
concurrency) cell: a short warm-up, a wait until the mock LLM has been idle for a moment (runs
a previous cell left behind have finished), then a fixed number of iterations bounded by a
time limit (iterations not started by then are skipped; the number completed is reported).
A server that has just started first answers two runs one at a time, without a time limit:
they load what it loads lazily (embedding model, index, graph).

Questions differ in every iteration, so no cache can stand in for the work: question `n` is a
template over 22 policy topics, 6 phrasings, an order number and `n` ("Question 98: what
does the policy say about gift card expiry? My order is 20098."). Each cell asks the same
sequence of every server. Order numbers are plain digits on purpose: an `LS-<digits>` id makes
the mock model look the order up and answer from it, without citing a policy (no sources), so
every question here is answered from retrieved policy chunks: one embedding + FAISS search,
one model call, a grounded answer with sources.

Servers, one at a time (the others are stopped), against one Postgres and one index built at
start:
  steward      `python -m steward serve` (STEWARD_RUN_SLOTS=50, STEWARD_DB_POOL_MAX=30,
               STEWARD_LOG_LEVEL=WARNING), authenticated with an admin API key
  langgraph    `langgraph dev --no-browser --no-reload` with its defaults except
               `--server-log-level WARNING`: in-memory runtime (threads, runs and checkpoints
               never reach Postgres), and ONE run at a time: without `--n-jobs-per-worker`,
               langgraph_api/cli.py sets N_JOBS_PER_WORKER=1 (the help text's "Default: 10"
               is the config default, which `langgraph dev` overrides); `--langgraph-jobs 10`
               passes the flag. Its in-memory queue polls every 0.5 s when idle, so a run on an
               idle server starts 0.5-1 s after it was created. It runs in a temporary
               directory holding a copy of langgraph.json and links to the graph packages
  aegra        Aegra (`aegra-api`, Python 3.12, its own venv under .cache/bench/) with its
               defaults: no auth, no Redis, its own database; see bench/aegra_server.py

Measured per cell, besides runs/s and latency:
  CPU per run  utime+stime (with reaped children) from /proc, sampled before and after the
               measured part, divided by the OK runs: the server's process tree, Postgres (the
               postmaster's tree: backends and background processes), the mock LLM's tree and
               this process (the load client). See bench/proc_cpu.py
  statements   pg_stat_statements, reset before the cell, read after (the bench's own
               monitoring connection is left out): calls per OK run, by kind (verb and table)
               and the 10 most called statements. These are statements, not round trips: a
               client in pipeline mode sends several statements per round trip (and one
               BEGIN ... COMMIT transaction is 2 + n statements)
  LLM calls    chat requests the mock served, per OK run (the work is the same everywhere)
Postgres is a throwaway cluster the bench starts with pg_stat_statements preloaded (see
bench/pg_cluster.py); `--pg-url` uses an existing server instead.

Usage: python bench/http_load.py [--quick] [--scale 1.0] [--servers steward langgraph aegra]
       [--latencies 0 1000] [--concurrency 1 20 200] [--cell-limit-s 20] [--budget-s 660]
Writes bench/results/http_load.md (also printed) and a raw JSON file beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import os
import subprocess
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aegra_server import (  # bench/ is on sys.path when run as a script
    AEGRA_VERSION,
    AegraUnavailable,
    ensure_venv,
    find_python312,
    installed_version,
    running_aegra,
)
from latency_stats import percentile
from load_questions import question
from pg_cluster import (
    PgServer,
    Statement,
    create_database,
    drop_database,
    existing_server,
    find_bindir,
    normalized,
    read_statements,
    reset_statements,
    statement_kind,
    throwaway_cluster,
)
from proc_cpu import self_cpu_s, tree_cpu_s
from servers import (
    STEWARD_DB_POOL_MAX,
    STEWARD_RUN_SLOTS,
    Server,
    base_env,
    create_key,
    running_server,
    tail,
)

from mock_llm.process import MockLLM, running_mock_llm

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
LATENCIES_MS = (0, 1000)
CONCURRENCIES = (1, 20, 200)
ITERATIONS = {0: {1: 20, 20: 100, 200: 400}, 1000: {1: 10, 20: 60, 200: 200}}
SERVERS = ("steward", "langgraph", "aegra")
LABELS = {"steward": "steward", "langgraph": "langgraph dev", "aegra": "aegra"}
REQUEST_TIMEOUT_S = 120.0
MIN_CELL_S = 5.0
SETTLE_CAP_S = 45.0
CPU_PARTS = ("server", "postgres", "mock", "client")


def run_body(n: int) -> dict[str, Any]:
    return {
        "assistant_id": "agent",
        "input": {"messages": [{"role": "user", "content": question(n)}]},
    }


# --------------------------------------------------------------------------- workload


@dataclass
class CellResult:
    latency_ms: int
    concurrency: int
    server: str
    planned: int
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    not_started: int = 0
    cut_in_flight: int = 0
    elapsed_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    warmup: dict[str, Any] = field(default_factory=dict)
    settle_s: float = 0.0
    settled: bool = True
    cpu_s: dict[str, float | None] = field(default_factory=dict)
    llm_calls: int = 0
    statements: list[Statement] | None = None

    def per_run(self, value: float | None, scale: float = 1.0) -> float | None:
        return None if value is None or not self.ok else value * scale / self.ok

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        cpu_ms = {part: self.per_run(self.cpu_s.get(part), 1000) for part in CPU_PARTS}
        stmts = self.statements
        return {
            "latency_ms": self.latency_ms,
            "concurrency": self.concurrency,
            "server": self.server,
            "planned": self.planned,
            "ok": self.ok,
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "error_samples": self.error_samples,
            "not_started": self.not_started,
            "cut_in_flight": self.cut_in_flight,
            "elapsed_s": self.elapsed_s,
            "throughput_it_s": self.ok / self.elapsed_s if self.elapsed_s else 0.0,
            "p50_ms": percentile(lat, 50),
            "p99_ms": percentile(lat, 99),
            "mean_ms": sum(lat) / len(lat) if lat else None,
            "max_ms": lat[-1] if lat else None,
            "warmup": self.warmup,
            "settle_s": self.settle_s,
            "settled": self.settled,
            "cpu_s": self.cpu_s,
            "cpu_ms_per_run": cpu_ms,
            "llm_calls_per_run": self.per_run(self.llm_calls),
            "statements_per_run": None
            if stmts is None
            else self.per_run(sum(s.calls for s in stmts)),
            "pg_exec_ms_per_run": None
            if stmts is None
            else self.per_run(sum(s.exec_ms for s in stmts)),
            "statements": None
            if stmts is None
            else [asdict(s) for s in sorted(stmts, key=lambda s: -s.calls)],
        }


async def iteration(
    client: httpx.AsyncClient, headers: dict[str, str], n: int
) -> tuple[str | None, str]:
    """One create-thread + run-wait; return (error kind or None, detail)."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            created = await client.post("/threads", json={}, headers=headers)
            if created.status_code != 200:
                return f"threads_{created.status_code}", created.text[:300]
            thread_id = created.json()["thread_id"]
            waited = await client.post(
                f"/threads/{thread_id}/runs/wait", json=run_body(n), headers=headers
            )
            if waited.status_code != 200:
                return f"wait_{waited.status_code}", waited.text[:300]
            data = waited.json()
    except TimeoutError:
        return "timeout", f"iteration exceeded {REQUEST_TIMEOUT_S:.0f} s"
    except httpx.HTTPError as exc:
        cause = exc.__cause__ or exc.__context__
        return f"http_{type(exc).__name__}", (str(exc) or repr(cause))[:300]
    except ValueError as exc:
        return "bad_json", str(exc)[:300]
    response = data.get("response") if isinstance(data, dict) else None
    if isinstance(response, dict) and response.get("sources"):
        return None, ""
    if isinstance(data, dict) and "__error__" in data:
        return "run_error", json.dumps(data["__error__"])[:300]
    if isinstance(data, dict) and "__interrupt__" in data:
        return "interrupted", json.dumps(data["__interrupt__"], default=str)[:300]
    return "no_sources", json.dumps(response if response is not None else data, default=str)[:300]


async def drive(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    concurrency: int,
    iterations: int,
    limit_s: float,
    drain_s: float,
    result: CellResult,
    first_question: int,
) -> None:
    """Run `iterations` with `concurrency` workers; start none after `limit_s`."""
    started = 0
    in_flight = 0
    t0 = time.perf_counter()
    deadline = time.monotonic() + limit_s

    async def worker() -> None:
        nonlocal started, in_flight
        while started < iterations and time.monotonic() < deadline:
            n = first_question + started
            started += 1
            in_flight += 1
            t = time.perf_counter()
            kind, detail = await iteration(client, headers, n)
            in_flight -= 1
            if kind is None:
                result.ok += 1
                result.latencies_ms.append((time.perf_counter() - t) * 1000)
            else:
                result.errors[kind] += 1
                if len(result.error_samples) < 5:
                    at = time.perf_counter() - t0
                    result.error_samples.append(f"{kind} at {at:.1f}s: {detail}")

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=limit_s + drain_s)
    result.cut_in_flight = in_flight if pending else 0
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    result.elapsed_s = time.perf_counter() - t0
    result.not_started = iterations - started


# --------------------------------------------------------------------------- probes


@dataclass
class Probes:
    """What a cell samples before and after its measured part."""

    pg: PgServer
    monitor: psycopg.Connection[Any]
    mock: MockLLM
    server: Server

    def cpu(self) -> dict[str, float | None]:
        pg_pid = self.pg.postmaster_pid
        return {
            "server": tree_cpu_s(self.server.process.pid),
            "postgres": tree_cpu_s(pg_pid) if pg_pid is not None else None,
            "mock": tree_cpu_s(self.mock.process.pid),
            "client": self_cpu_s(),
        }

    def start(self) -> dict[str, float | None]:
        if self.pg.statements:
            reset_statements(self.monitor)
        return self.cpu()

    def stop(self) -> tuple[dict[str, float | None], list[Statement] | None]:
        cpu = self.cpu()
        return cpu, read_statements(self.monitor) if self.pg.statements else None


async def mock_requests(mock: MockLLM) -> int:
    return int((await mock.stats())["requests"])


async def wait_idle(mock: MockLLM, latency_ms: int) -> tuple[float, bool]:
    """Wait until the mock LLM got no request for a while (leftover runs have finished)."""
    window = max(2.0, 2 * latency_ms / 1000 + 1)
    t0 = time.monotonic()
    last = await mock_requests(mock)
    quiet_since = time.monotonic()
    while time.monotonic() - t0 < SETTLE_CAP_S:
        await asyncio.sleep(0.5)
        now = await mock_requests(mock)
        if now != last:
            last, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since >= window:
            return time.monotonic() - t0, True
    return time.monotonic() - t0, False


def client_for(server: Server, concurrency: int) -> httpx.AsyncClient:
    """A client with `concurrency` connections that drops idle ones after 2 s.

    httpx keeps idle connections 5 s by default, as long as uvicorn's keep-alive timeout:
    a connection picked from the pool as the server closes it fails with
    ReadError(BrokenResourceError), an error of the bench, not of the server.
    """
    limits = httpx.Limits(
        max_connections=concurrency, max_keepalive_connections=concurrency, keepalive_expiry=2.0
    )
    return httpx.AsyncClient(base_url=server.base_url, limits=limits, timeout=REQUEST_TIMEOUT_S)


def delta(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


async def run_cell(
    probes: Probes,
    latency_ms: int,
    concurrency: int,
    iterations: int,
    limit_s: float,
    first_question: int,
    args: argparse.Namespace,
) -> CellResult:
    server = probes.server
    result = CellResult(latency_ms, concurrency, server.name, iterations)
    warm_c = min(concurrency, 5)
    warm = CellResult(latency_ms, warm_c, server.name, max(2, warm_c))
    async with client_for(server, warm_c) as client:
        await drive(
            client,
            server.headers,
            warm_c,
            warm.planned,
            args.warmup_limit_s,
            args.drain_s,
            warm,
            first_question + 500_000,
        )
    result.warmup = {
        "iterations": warm.planned,
        "concurrency": warm_c,
        "ok": warm.ok,
        "errors": dict(warm.errors),
        "elapsed_s": warm.elapsed_s,
    }
    result.settle_s, result.settled = await wait_idle(probes.mock, latency_ms)
    # a new client, with as many connections as workers
    async with client_for(server, concurrency) as client:
        calls_before = await mock_requests(probes.mock)
        before = await asyncio.to_thread(probes.start)
        await drive(
            client,
            server.headers,
            concurrency,
            iterations,
            limit_s,
            args.drain_s,
            result,
            first_question,
        )
        after, result.statements = await asyncio.to_thread(probes.stop)
        result.llm_calls = await mock_requests(probes.mock) - calls_before
    result.cpu_s = {part: delta(before[part], after[part]) for part in CPU_PARTS}
    return result


@dataclass
class Plan:
    """The cells' time limits: at most --cell-limit-s, less when --budget-s runs short.

    A (latency, concurrency) cell gets one limit for every server, fixed when its first server
    reaches it, so the servers compare under the same limit: a fair share of what is left of
    the budget for the cells still to run, less the time a cell spends beyond its limit
    (warm-up, settling, drain; a running average), and never below MIN_CELL_S. Later servers may
    overrun the budget a little rather than get shorter cells.
    """

    deadline: float
    cells_left: int
    overhead_s: float = 15.0
    cells_done: int = 0
    limits: dict[tuple[int, int], float] = field(default_factory=dict)

    def next_limit(self, latency_ms: int, concurrency: int, cell_limit_s: float) -> float:
        key = (latency_ms, concurrency)
        if key not in self.limits:
            left = max(self.cells_left, 1)
            share = (self.deadline - time.monotonic()) / left - self.overhead_s
            self.limits[key] = max(MIN_CELL_S, min(cell_limit_s, share))
        self.cells_left -= 1
        return self.limits[key]

    def record(self, cell_wall_s: float, limit_s: float) -> None:
        """A cell took `cell_wall_s`: all but `limit_s` of it is overhead (drain included)."""
        self.cells_done += 1
        overhead = max(0.0, cell_wall_s - limit_s)
        self.overhead_s += (overhead - self.overhead_s) / self.cells_done


async def first_runs(server: Server, count: int = 2) -> list[str]:
    """A new server's first runs, one at a time and without a time limit.

    They load what a server loads lazily (the embedding model, the index, the graph), so the
    first cell does not time that; the per-cell warm-up is bounded and could be cut short.
    """
    problems: list[str] = []
    async with httpx.AsyncClient(base_url=server.base_url, timeout=REQUEST_TIMEOUT_S) as client:
        for n in range(count):
            kind, detail = await iteration(client, server.headers, 900_000 + n)
            if kind is not None:
                problems.append(f"{kind}: {detail}")
    return problems


async def server_cells(
    probes: Probes,
    latency_index: int,
    latency_ms: int,
    plan: Plan,
    args: argparse.Namespace,
) -> list[dict[str, Any]]:
    """Every concurrency cell of one running server."""
    rows: list[dict[str, Any]] = []
    for ci, conc in enumerate(args.concurrency):
        planned = max(1, round(ITERATIONS[latency_ms][conc] * args.scale))
        limit_s = plan.next_limit(latency_ms, conc, args.cell_limit_s)
        # the same questions for every server; distinct across cells
        first = (latency_index * 10 + ci) * 1_000_000
        t0 = time.monotonic()
        cell = await run_cell(probes, latency_ms, conc, planned, limit_s, first, args)
        plan.record(time.monotonic() - t0, limit_s)
        row = cell.summary()
        row["limit_s"] = limit_s
        rows.append(row)
        cpu = sum(v or 0.0 for v in row["cpu_ms_per_run"].values())
        short = f", limit {limit_s:.0f}s" if limit_s < args.cell_limit_s else ""
        print(
            f"  c={conc:<4} ok {row['ok']}/{planned} err {row['errors']} "
            f"{row['throughput_it_s']:.2f} runs/s p50 {fmt(row['p50_ms'])} "
            f"p99 {fmt(row['p99_ms'])} ms, CPU {cpu:.0f} ms/run, "
            f"{fmt(row['statements_per_run'], '.1f')} statements/run "
            f"({row['elapsed_s']:.1f}s, settle {row['settle_s']:.1f}s{short})",
            flush=True,
        )
    return rows


# --------------------------------------------------------------------------- report


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None or not b else f"{a / b:.2f}"


def md_table(headers: list[str], rows: list[list[str]], align: str | None = None) -> list[str]:
    spec = align or "l" + "r" * (len(headers) - 1)
    marks = ["---:" if a == "r" else ":---" for a in spec]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return lines


def cell_key(r: dict[str, Any]) -> tuple[int, int, str]:
    return r["latency_ms"], r["concurrency"], r["server"]


def cut(r: dict[str, Any]) -> bool:
    """Runs were cut in flight: their partial work is in the totals, not in the divisor."""
    return bool(r["cut_in_flight"])


def cpu_total(r: dict[str, Any], parts: tuple[str, ...] = CPU_PARTS) -> float | None:
    values = [r["cpu_ms_per_run"][p] for p in parts]
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def results_section(rows: list[dict[str, Any]]) -> list[str]:
    table = []
    for r in rows:
        done = r["ok"] + r["errors"]
        mark = " †" if cut(r) else ""
        table.append(
            [
                str(r["latency_ms"]),
                str(r["concurrency"]),
                LABELS[r["server"]],
                f"{r['throughput_it_s']:.2f}",
                fmt(r["p50_ms"]),
                fmt(r["p99_ms"]),
                str(r["errors"]),
                f"{done}/{r['planned']}",
                str(r["cut_in_flight"]),
                fmt(r["llm_calls_per_run"], ".2f"),
                fmt(r["statements_per_run"], ".1f") + mark,
                fmt(cpu_total(r)) + mark,
                f"{r['elapsed_s']:.1f}",
            ]
        )
    return [
        "## Throughput and latency",
        "",
        *md_table(
            [
                "mock ms",
                "c",
                "server",
                "runs/s",
                "p50 ms",
                "p99 ms",
                "errors",
                "done/planned",
                "cut",
                "LLM calls/run",
                "statements/run",
                "CPU ms/run",
                "wall s",
            ],
            table,
            "rrlrrrrrrrrrr",
        ),
        "",
        "runs/s counts OK runs over the cell's wall time; p50/p99 are of OK iterations "
        "(create thread + wait); done/planned: iterations that ended (the others were not "
        "started before the cell's time limit); cut: iterations still in flight after the "
        "drain, abandoned. Per-run figures divide by the OK runs; CPU ms/run is the total of "
        "the CPU tables below. † = runs were cut in flight: the work they did is in the "
        "totals but not in the divisor, so the per-run figure overstates the cost (LLM "
        "calls/run above 1 shows by how much: every run makes exactly one model call).",
        "",
    ]


def ratios_section(rows: list[dict[str, Any]], servers: list[str]) -> list[str]:
    by_key = {cell_key(r): r for r in rows}
    others = [s for s in ("langgraph", "aegra") if s in servers]
    if "steward" not in servers or not others:
        return []
    headers = ["mock ms", "c"]
    for other in others:
        tag = "lg" if other == "langgraph" else "aegra"
        headers += [f"runs/s s/{tag}", f"p50 s/{tag}", f"p99 s/{tag}"]
    table = []
    for lat in LATENCIES_MS:
        for conc in CONCURRENCIES:
            s = by_key.get((lat, conc, "steward"))
            if s is None:
                continue
            line = [str(lat), str(conc)]
            for other in others:
                o = by_key.get((lat, conc, other))
                if o is None:
                    line += ["-", "-", "-"]
                    continue
                line += [
                    ratio(s["throughput_it_s"], o["throughput_it_s"]),
                    ratio(s["p50_ms"], o["p50_ms"]),
                    ratio(s["p99_ms"], o["p99_ms"]),
                ]
            table.append(line)
    return [
        "## Ratios, steward / other (same run)",
        "",
        "runs/s above 1: steward faster; p50/p99 below 1: steward faster. `lg` = langgraph dev.",
        "",
        *md_table(headers, table, "rr" + "r" * (len(headers) - 2)),
        "",
    ]


def cpu_section(rows: list[dict[str, Any]], servers: list[str]) -> list[str]:
    by_key = {cell_key(r): r for r in rows}
    lines = [
        "## CPU per OK run (ms)",
        "",
        "utime+stime from /proc over the measured part of the cell, divided by its OK runs. "
        "server = the server's process tree; Postgres = the postmaster's tree (backends, "
        "background processes); mock+client = the mock LLM and this load client. "
        "total per model call divides by the model calls instead (one per run): where runs "
        "were cut in flight (†) it counts the ones that got that far, a closer estimate of "
        "the cost of a run.",
        "",
    ]
    for lat in LATENCIES_MS:
        for conc in CONCURRENCIES:
            cells = {s: by_key.get((lat, conc, s)) for s in servers}
            if not any(cells.values()):
                continue

            def value(server: str, parts: tuple[str, ...], cells: Any = cells) -> str:
                r = cells.get(server)
                if r is None:
                    return "-"
                vals = [r["cpu_ms_per_run"][p] for p in parts]
                return "-" if any(v is None for v in vals) else f"{sum(vals):.1f}"

            def per_call(server: str, cells: Any = cells) -> str:
                r = cells.get(server)
                total = None if r is None else cpu_total(r)
                calls = None if r is None else r["llm_calls_per_run"]
                return "-" if total is None or not calls else f"{total / calls:.1f}"

            table = [
                ["server CPU", *[value(s, ("server",)) for s in servers]],
                ["Postgres CPU", *[value(s, ("postgres",)) for s in servers]],
                ["mock+client", *[value(s, ("mock", "client")) for s in servers]],
                ["total", *[value(s, CPU_PARTS) for s in servers]],
                ["total per model call", *[per_call(s) for s in servers]],
            ]
            marks = [s for s, r in cells.items() if r is not None and cut(r)]
            flagged = f" († runs cut in flight: {', '.join(LABELS[m] for m in marks)})"
            lines += [
                f"mock {lat} ms, c={conc}{flagged if marks else ''}:",
                "",
                *md_table(["", *[LABELS[s] for s in servers]], table),
                "",
            ]
    return lines


def statements_section(rows: list[dict[str, Any]], servers: list[str]) -> list[str]:
    measured = [r for r in rows if r["statements"] is not None and r["ok"]]
    # cells that cut runs in flight count statements of runs they do not count
    counted = [r for r in measured if not cut(r)]
    left_out = [r for r in measured if cut(r)]
    for server in {r["server"] for r in left_out} - {r["server"] for r in counted}:
        counted += [r for r in left_out if r["server"] == server]
        left_out = [r for r in left_out if r["server"] != server]
    if not counted:
        return [
            "## Postgres statements",
            "",
            "not measured: pg_stat_statements is not loaded on this server",
            "",
        ]
    ok: Counter[str] = Counter()
    kinds: dict[str, Counter[str]] = defaultdict(Counter)
    queries: dict[str, Counter[str]] = defaultdict(Counter)
    exec_ms: dict[str, Counter[str]] = defaultdict(Counter)
    for r in counted:
        ok[r["server"]] += r["ok"]
        for s in r["statements"]:
            kinds[r["server"]][statement_kind(s["query"])] += s["calls"]
            queries[r["server"]][s["query"]] += s["calls"]
            exec_ms[r["server"]][s["query"]] += s["exec_ms"]
    present = [s for s in servers if sum(kinds[s].values())]
    silent = [LABELS[s] for s in servers if ok[s] and s not in present]

    def per_run(server: str, count: float) -> str:
        return f"{count / ok[server]:.2f}" if count else "-"

    totals = [
        ["statements", *[per_run(s, sum(kinds[s].values())) for s in present]],
        ["exec ms", *[per_run(s, sum(exec_ms[s].values())) for s in present]],
    ]
    all_kinds = sorted(
        {k for s in present for k in kinds[s]},
        key=lambda k: -max(kinds[s][k] / ok[s] for s in present),
    )
    kind_rows = [[k, *[per_run(s, kinds[s][k]) for s in present]] for k in all_kinds]
    lines = [
        "## Postgres statements per OK run",
        "",
        "pg_stat_statements over the cells of each server (reset before each measured part; "
        "summed, divided by the OK runs). Statements, not round trips: pipelined statements "
        "share a round trip; BEGIN/COMMIT/ROLLBACK count as statements. langgraph dev keeps "
        "threads, runs and checkpoints in memory, so it makes none.",
        "",
        *([f"No statements at all: {', '.join(silent)}.", ""] if silent else []),
        *(
            [
                "Left out (runs cut in flight, see †): "
                + ", ".join(
                    f"{LABELS[r['server']]} {r['latency_ms']} ms c={r['concurrency']}"
                    for r in left_out
                )
                + ".",
                "",
            ]
            if left_out
            else []
        ),
        *md_table(["per run", *[LABELS[s] for s in present]], totals),
        "",
        "By kind (verb and first table):",
        "",
        *md_table(["kind", *[LABELS[s] for s in present]], kind_rows),
        "",
    ]
    for s in present:
        top = queries[s].most_common(10)
        if not top:
            continue
        lines += [
            f"Top 10 statements by calls, {LABELS[s]}:",
            "",
            *md_table(
                ["calls/run", "ms/run", "statement (normalized)"],
                [
                    [per_run(s, calls), per_run(s, exec_ms[s][q]), f"`{normalized(q)}`"]
                    for q, calls in top
                ],
                "rrl",
            ),
            "",
        ]
    return lines


def notes_section(out: dict[str, Any]) -> list[str]:
    notes: list[str] = list(out["notes"])
    for r in out["rows"]:
        where = f"{LABELS[r['server']]} {r['latency_ms']} ms c={r['concurrency']}"
        if r["errors"] or r["cut_in_flight"] or r["not_started"]:
            notes.append(
                f"{where}: errors {r['error_kinds'] or 0}, not started before the time limit "
                f"{r['not_started']}, cut in flight {r['cut_in_flight']}"
            )
            notes += [f"  - `{sample[:200]}`" for sample in r["error_samples"][:3]]
        if not r["settled"]:
            notes.append(
                f"{where}: the mock LLM still got requests {r['settle_s']:.0f} s after the "
                "warm-up (runs left by the previous cell were still running when it started)"
            )
    for s in out["skipped"]:
        notes.append(
            f"{LABELS[s['server']]} {s['latency_ms']} ms c={s['concurrency']}: not run "
            "(the server did not start)"
        )
    for st in out["startups"]:
        for line in st.get("log_error_lines", [])[:5]:
            notes.append(f"{LABELS[st['server']]} log ({st['latency_ms']} ms): `{line[:200]}`")
    if not notes:
        return []
    lines = [" / ".join(x for x in n.splitlines() if x.strip()) for n in notes]
    return ["## Notes", "", *[n if n.startswith("  ") else f"- {n}" for n in lines], ""]


def report(out: dict[str, Any], config: dict[str, Any]) -> str:
    servers = [s for s in SERVERS if any(r["server"] == s for r in out["rows"])]
    startups = ", ".join(
        f"{LABELS[s['server']]} {s['startup_s']:.1f}s ({s['latency_ms']} ms)"
        for s in out["startups"]
    )
    lines = [
        "# HTTP load: steward vs langgraph dev vs Aegra",
        "",
        f"{config['date']}, {config['cpus']} CPUs, total {config['total_s']:.0f} s. "
        f"Steward {config['steward']['commit']}; "
        f"langgraph-api {config['langgraph_dev']['version']} "
        f"(N_JOBS_PER_WORKER {config['langgraph_dev']['N_JOBS_PER_WORKER']}); "
        f"aegra-api {config['aegra']['version']}.",
        "",
        f"Postgres: {config['postgres']}.",
        "",
        f"Iteration = `POST /threads` + `POST /threads/{{id}}/runs/wait`, OK when the answer "
        f"has sources; a distinct question per iteration (`{question(98)}`). "
        f"Scale {config['scale']}, cell limit {config['cell_limit_s']:.0f} s "
        f"(+{config['drain_s']:.0f} s drain), warm-up before each cell. Server start-up: "
        f"{startups}.",
        "",
        *results_section(out["rows"]),
        *ratios_section(out["rows"], servers),
        *cpu_section(out["rows"], servers),
        *statements_section(out["rows"], servers),
        *notes_section(out),
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def benign(log_line: str) -> bool:
    """faiss logs its failed imports of the AVX-512/AVX2 builds before loading the generic one."""
    return "faiss.loader" in log_line or "swigfaiss_avx" in log_line


@contextlib.contextmanager
def start_server(
    name: str,
    env: dict[str, str],
    work: Path,
    api_key: str,
    aegra: tuple[Path, str] | None,
    args: argparse.Namespace,
) -> Iterator[Server]:
    if name == "aegra":
        if aegra is None:
            raise RuntimeError("aegra is not installed")
        with running_aegra(aegra[0], env, aegra[1], work) as srv:
            yield srv
    else:
        with running_server(
            name, env, work, api_key, args.langgraph_log_level, args.langgraph_jobs
        ) as srv:
            yield srv


async def bench(
    args: argparse.Namespace,
    pg: PgServer,
    db_url: str,
    aegra: tuple[Path, str] | None,
    work: Path,
) -> dict[str, Any]:
    home = work / "home"
    home.mkdir()
    from core.knowledge.embeddings import LocalEmbedder
    from core.knowledge.ingest import ingest

    t0 = time.perf_counter()
    await asyncio.to_thread(
        ingest, [ROOT / "data" / "policies"], home / "index", LocalEmbedder(), progress=False
    )
    print(f"index built in {time.perf_counter() - t0:.1f}s", flush=True)
    rows: list[dict[str, Any]] = []
    startups: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    notes: list[str] = []
    api_key = ""
    plan = Plan(
        deadline=time.monotonic() + args.budget_s,
        cells_left=len(args.latencies) * len(args.servers) * len(args.concurrency),
    )
    with psycopg.connect(pg.admin_url, autocommit=True) as monitor:
        for li, latency_ms in enumerate(args.latencies):
            with running_mock_llm(latency_ms=latency_ms) as mock:
                env = base_env(db_url, home, mock.base_url)
                if not api_key:
                    api_key = await asyncio.to_thread(create_key, env)  # also migrates the db
                for name in args.servers:
                    with contextlib.ExitStack() as stack:
                        try:
                            srv = stack.enter_context(
                                start_server(name, env, work, api_key, aegra, args)
                            )
                        except RuntimeError as exc:
                            print(f"[{latency_ms} ms] {name} did not start: {exc}", flush=True)
                            notes.append(f"{LABELS[name]} ({latency_ms} ms) did not start: {exc}")
                            plan.cells_left -= len(args.concurrency)
                            skipped += [
                                {"server": name, "latency_ms": latency_ms, "concurrency": c}
                                for c in args.concurrency
                            ]
                            continue
                        print(f"[{latency_ms} ms] {name} ready in {srv.startup_s:.1f}s", flush=True)
                        startup: dict[str, Any] = {
                            "server": name,
                            "latency_ms": latency_ms,
                            "startup_s": srv.startup_s,
                        }
                        startups.append(startup)
                        problems = await first_runs(srv)
                        if problems:
                            notes.append(
                                f"{LABELS[name]} ({latency_ms} ms) first runs: {problems[0]}"
                            )
                        probes = Probes(pg, monitor, mock, srv)
                        rows += await server_cells(probes, li, latency_ms, plan, args)
                        if srv.process.poll() is not None:
                            print(f"  {name} exited early:\n{tail(srv.log)}")
                        startup["log_error_lines"] = [
                            line
                            for line in srv.log.read_text(errors="replace").splitlines()
                            if ("Error" in line or "Traceback" in line) and not benign(line)
                        ][:20]
    return {"rows": rows, "startups": startups, "skipped": skipped, "notes": notes}


def prepare_aegra(args: argparse.Namespace, notes: list[str]) -> tuple[Path, str] | None:
    """The Aegra venv's python and the installed version, or None (and a note) if it fails."""
    if "aegra" not in args.servers:
        return None
    try:
        python = ensure_venv(args.aegra_version, find_python312(args.aegra_python))
        return python, installed_version(python)
    except AegraUnavailable as exc:
        print(f"aegra unavailable, benching the others: {exc}", flush=True)
        notes.append(f"aegra unavailable: {exc}")
        args.servers = [s for s in args.servers if s != "aegra"]
        return None


@contextlib.contextmanager
def postgres(args: argparse.Namespace) -> Iterator[PgServer]:
    if args.pg_url:
        yield existing_server(args.pg_url)
        return
    bindir = find_bindir()
    if bindir is None:
        raise SystemExit(
            "no initdb/pg_ctl under /usr/lib/postgresql/*/bin: pass --pg-url (statement "
            "counts need pg_stat_statements in its shared_preload_libraries)"
        )
    with throwaway_cluster(bindir) as server:
        yield server


def git_commit() -> str:
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    )
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip() + (" (modified)" if dirty.stdout.strip() else "")


def main(args: argparse.Namespace) -> None:
    if args.quick:
        args.scale, args.cell_limit_s, args.drain_s, args.warmup_limit_s = 0.2, 8.0, 8.0, 5.0
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    started = time.perf_counter()
    notes: list[str] = []
    aegra = prepare_aegra(args, notes)
    suffix = uuid.uuid4().hex[:8]
    steward_db, aegra_db = f"steward_bench_{suffix}", f"aegra_bench_{suffix}"
    with postgres(args) as pg:
        print(f"postgres: {pg.description}", flush=True)
        db_url = create_database(pg, steward_db)
        aegra_url = create_database(pg, aegra_db) if aegra else ""
        try:
            with tempfile.TemporaryDirectory(prefix="steward-http-load-") as tmp:
                out = asyncio.run(
                    bench(args, pg, db_url, (aegra[0], aegra_url) if aegra else None, Path(tmp))
                )
        finally:
            drop_database(pg, steward_db)
            if aegra:
                drop_database(pg, aegra_db)
    out["notes"] = notes + out["notes"]
    config = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "cpus": os.cpu_count(),
        "scale": args.scale,
        "cell_limit_s": args.cell_limit_s,
        "drain_s": args.drain_s,
        "budget_s": args.budget_s,
        "request_timeout_s": REQUEST_TIMEOUT_S,
        "postgres": pg.description,
        "steward": {
            "commit": git_commit(),
            "STEWARD_RUN_SLOTS": STEWARD_RUN_SLOTS,
            "STEWARD_DB_POOL_MAX": STEWARD_DB_POOL_MAX,
            "log_level": "WARNING",
        },
        "langgraph_dev": {
            "version": importlib.metadata.version("langgraph-api"),
            "N_JOBS_PER_WORKER": args.langgraph_jobs
            if args.langgraph_jobs is not None
            else "1 (CLI default)",
            "runtime": "inmem",
            "server_log_level": args.langgraph_log_level,
        },
        "aegra": {"version": aegra[1] if aegra else "not run", "auth": "noop", "redis": False},
        "total_s": time.perf_counter() - started,
    }
    text = report(out, config)
    print("\n" + text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "http_load.md").write_text(text + "\n")
    raw = RESULTS / f"http_load-{time.strftime('%Y%m%dT%H%M%S')}.json"
    raw.write_text(json.dumps({"config": config, **out}, indent=2, default=str))
    print(f"\nwrote {RESULTS / 'http_load.md'} and {raw}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--latencies", type=int, nargs="+", default=list(LATENCIES_MS), choices=LATENCIES_MS
    )
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=list(CONCURRENCIES), choices=CONCURRENCIES
    )
    parser.add_argument("--servers", nargs="+", default=list(SERVERS), choices=SERVERS)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run: --scale 0.2, 8 s cells (+8 s drain), 5 s warm-ups",
    )
    parser.add_argument(
        "--scale",
        type=float,
        default=1.0,
        help="multiply every cell's iteration count (smoke runs)",
    )
    parser.add_argument(
        "--cell-limit-s",
        type=float,
        default=20.0,
        help="no iteration starts later than this into a cell",
    )
    parser.add_argument(
        "--drain-s",
        type=float,
        default=20.0,
        help="in-flight iterations get this long after the limit, then are cut",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=660.0,
        help="time for the servers' starts and cells (after the index is built); a cell's "
        "limit shrinks to a fair share of what is left, down to 5 s",
    )
    parser.add_argument("--warmup-limit-s", type=float, default=8.0)
    parser.add_argument("--langgraph-log-level", default="WARNING")
    parser.add_argument(
        "--langgraph-jobs",
        type=int,
        default=None,
        help="pass --n-jobs-per-worker to langgraph dev (default: not passed = 1)",
    )
    parser.add_argument("--aegra-version", default=AEGRA_VERSION)
    parser.add_argument("--aegra-python", default=None, help="a Python 3.12 for Aegra's venv")
    parser.add_argument(
        "--pg-url",
        default=None,
        help="use this running Postgres instead of a throwaway cluster (statement counts "
        "only if it preloads pg_stat_statements)",
    )
    main(parser.parse_args())
