"""HTTP load: `steward serve` against `langgraph dev` serving the same graph, same run.

One iteration = `POST /threads {}` then `POST /threads/{id}/runs/wait` (assistant `agent`, one
user question). It is OK only if the wait answers 200 with a `response` that has non-empty
`sources`; anything else is an error (counted by kind). For every (mock LLM latency, server,
concurrency) cell: a short warm-up, then a fixed number of iterations bounded by a time limit
(iterations not started by then are skipped; the number completed is reported).

Servers, one at a time (the other is stopped), against one fresh Postgres database and one
index built at start:
  steward      `python -m steward serve` (STEWARD_RUN_SLOTS=50, STEWARD_DB_POOL_MAX=30,
               STEWARD_LOG_LEVEL=WARNING), authenticated with an admin API key
  langgraph    `langgraph dev --no-browser --no-reload` with its defaults except
               `--server-log-level WARNING`: in-memory runtime, and ONE run at a time: without
               `--n-jobs-per-worker`, langgraph_api/cli.py sets N_JOBS_PER_WORKER=1 (the help
               text's "Default: 10" is the config default, which `langgraph dev` overrides);
               `--langgraph-jobs 10` passes the flag. Its in-memory queue polls every 0.5 s when
               idle, so a run on an idle server starts 0.5-1 s after it was created. It runs in
               a temporary directory holding a copy of langgraph.json and links to the graph
               packages, so its `.langgraph_api/` state starts empty and the tree's is left alone

Usage: python bench/http_load.py [--cell-limit-s 40] [--scale 1.0]
Needs Postgres (STEWARD_BENCH_PG, default postgresql://root@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from servers import (  # bench/ is on sys.path when run as a script
    STEWARD_DB_POOL_MAX,
    STEWARD_RUN_SLOTS,
    Server,
    base_env,
    create_key,
    running_server,
    tail,
)

from mock_llm.process import running_mock_llm

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How long is the return window?"
LATENCIES_MS = (0, 1000)
CONCURRENCIES = (1, 20, 200)
ITERATIONS = {0: {1: 20, 20: 100, 200: 400}, 1000: {1: 10, 20: 60, 200: 200}}
SERVERS = ("steward", "langgraph")
REQUEST_TIMEOUT_S = 120.0


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

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
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
        }


def percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (p99 of fewer than 100 values is the maximum)."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


RUN_BODY = {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": QUESTION}]}}


async def iteration(client: httpx.AsyncClient, headers: dict[str, str]) -> tuple[str | None, str]:
    """One create-thread + run-wait; return (error kind or None, detail)."""
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            created = await client.post("/threads", json={}, headers=headers)
            if created.status_code != 200:
                return f"threads_{created.status_code}", created.text[:300]
            thread_id = created.json()["thread_id"]
            waited = await client.post(
                f"/threads/{thread_id}/runs/wait", json=RUN_BODY, headers=headers
            )
            if waited.status_code != 200:
                return f"wait_{waited.status_code}", waited.text[:300]
            data = waited.json()
    except TimeoutError:
        return "timeout", f"iteration exceeded {REQUEST_TIMEOUT_S:.0f} s"
    except httpx.HTTPError as exc:
        return f"http_{type(exc).__name__}", str(exc)[:300]
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
) -> None:
    """Run `iterations` with `concurrency` workers; start none after `limit_s`."""
    started = 0
    in_flight = 0
    t0 = time.perf_counter()
    deadline = time.monotonic() + limit_s

    async def worker() -> None:
        nonlocal started, in_flight
        while started < iterations and time.monotonic() < deadline:
            started += 1
            in_flight += 1
            t = time.perf_counter()
            kind, detail = await iteration(client, headers)
            in_flight -= 1
            if kind is None:
                result.ok += 1
                result.latencies_ms.append((time.perf_counter() - t) * 1000)
            else:
                result.errors[kind] += 1
                if len(result.error_samples) < 5:
                    result.error_samples.append(f"{kind}: {detail}")

    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    _, pending = await asyncio.wait(tasks, timeout=limit_s + drain_s)
    result.cut_in_flight = in_flight if pending else 0
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    result.elapsed_s = time.perf_counter() - t0
    result.not_started = iterations - started


async def run_cell(
    server: Server,
    latency_ms: int,
    concurrency: int,
    iterations: int,
    limit_s: float,
    args: argparse.Namespace,
) -> CellResult:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    result = CellResult(latency_ms, concurrency, server.name, iterations)
    async with httpx.AsyncClient(
        base_url=server.base_url, limits=limits, timeout=REQUEST_TIMEOUT_S
    ) as client:
        warm_c = min(concurrency, 10)
        warm = CellResult(latency_ms, warm_c, server.name, max(2, warm_c))
        await drive(client, server.headers, warm_c, warm.planned, args.warmup_limit_s, 30.0, warm)
        result.warmup = {
            "iterations": warm.planned,
            "concurrency": warm_c,
            "ok": warm.ok,
            "errors": dict(warm.errors),
            "elapsed_s": warm.elapsed_s,
        }
        await drive(client, server.headers, concurrency, iterations, limit_s, args.drain_s, result)
    return result


# --------------------------------------------------------------------------- report


def fmt(value: float | None, spec: str = ".0f") -> str:
    return "-" if value is None else format(value, spec)


def ratio(a: float | None, b: float | None) -> str:
    return "-" if a is None or b in (None, 0) or not b else f"{a / b:.2f}"


def print_report(rows: list[dict[str, Any]]) -> None:
    print(
        f"\n{'lat_ms':>6} {'conc':>5} {'server':<10} {'ok/err':>9} {'done/plan':>10} "
        f"{'it/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'wall s':>7}"
    )
    for r in rows:
        done = r["ok"] + r["errors"]
        print(
            f"{r['latency_ms']:>6} {r['concurrency']:>5} {r['server']:<10} "
            f"{str(r['ok']) + '/' + str(r['errors']):>9} "
            f"{str(done) + '/' + str(r['planned']):>10} {r['throughput_it_s']:>7.2f} "
            f"{fmt(r['p50_ms']):>8} {fmt(r['p99_ms']):>8} {r['elapsed_s']:>7.1f}"
        )
    print(
        "\nratios steward / langgraph-dev (throughput >1 = steward faster; "
        "latency <1 = steward faster)"
    )
    print(f"{'lat_ms':>6} {'conc':>5} {'it/s':>7} {'p50':>7} {'p99':>7}")
    by_key = {(r["latency_ms"], r["concurrency"], r["server"]): r for r in rows}
    for lat in LATENCIES_MS:
        for conc in CONCURRENCIES:
            s = by_key.get((lat, conc, "steward"))
            g = by_key.get((lat, conc, "langgraph"))
            if s is None or g is None:
                continue
            print(
                f"{lat:>6} {conc:>5} {ratio(s['throughput_it_s'], g['throughput_it_s']):>7} "
                f"{ratio(s['p50_ms'], g['p50_ms']):>7} {ratio(s['p99_ms'], g['p99_ms']):>7}"
            )
    for r in rows:
        if r["errors"] or r["cut_in_flight"] or r["not_started"]:
            print(
                f"\nnote {r['server']} {r['latency_ms']} ms c={r['concurrency']}: "
                f"errors {r['error_kinds']}, not started {r['not_started']}, "
                f"cut in flight {r['cut_in_flight']}"
            )
            for sample in r["error_samples"]:
                print(f"  {sample}")


# --------------------------------------------------------------------------- main


async def bench(
    args: argparse.Namespace, db_url: str, work: Path, deadline: float
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
    api_key = ""
    for latency_ms in args.latencies:
        with running_mock_llm(latency_ms=latency_ms) as mock:
            env = base_env(db_url, home, mock.base_url)
            if not api_key:
                api_key = await asyncio.to_thread(create_key, env)  # also migrates the db
            for name in args.servers:
                with running_server(
                    name, env, work, api_key, args.langgraph_log_level, args.langgraph_jobs
                ) as srv:
                    print(f"[{latency_ms} ms] {name} ready in {srv.startup_s:.1f}s", flush=True)
                    startups.append(
                        {"server": name, "latency_ms": latency_ms, "startup_s": srv.startup_s}
                    )
                    for conc in args.concurrency:
                        planned = max(1, round(ITERATIONS[latency_ms][conc] * args.scale))
                        # the whole run stays within --budget-s: later cells get less time
                        limit_s = min(
                            args.cell_limit_s, deadline - time.monotonic() - args.drain_s - 15
                        )
                        if limit_s < 3:
                            print(f"  c={conc:<4} skipped: --budget-s exhausted", flush=True)
                            skipped.append(
                                {"server": name, "latency_ms": latency_ms, "concurrency": conc}
                            )
                            continue
                        cell = await run_cell(srv, latency_ms, conc, planned, limit_s, args)
                        row = cell.summary()
                        rows.append(row)
                        print(
                            f"  c={conc:<4} ok {row['ok']}/{planned} err {row['errors']} "
                            f"{row['throughput_it_s']:.2f} it/s p50 {fmt(row['p50_ms'])} "
                            f"p99 {fmt(row['p99_ms'])} ms ({row['elapsed_s']:.1f}s)",
                            flush=True,
                        )
                    if srv.process.poll() is not None:
                        print(f"  {name} exited early:\n{tail(srv.log)}")
                    errors_in_log = [
                        line
                        for line in srv.log.read_text(errors="replace").splitlines()
                        if "Error" in line or "Traceback" in line
                    ]
                    startups[-1]["log_error_lines"] = errors_in_log[:20]
    return {"rows": rows, "startups": startups, "skipped": skipped}


def main(args: argparse.Namespace) -> None:
    admin_url = os.environ.get("STEWARD_BENCH_PG", "postgresql://root@127.0.0.1:5432/postgres")
    db_name = f"steward_bench_{uuid.uuid4().hex[:8]}"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{db_name}"')
    db_url = f"{admin_url.rsplit('/', 1)[0]}/{db_name}"
    started = time.perf_counter()
    deadline = time.monotonic() + args.budget_s
    try:
        with tempfile.TemporaryDirectory(prefix="steward-http-load-") as tmp:
            out = asyncio.run(bench(args, db_url, Path(tmp), deadline))
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    total = time.perf_counter() - started
    print_report(out["rows"])
    config = {
        "cpus": os.cpu_count(),
        "scale": args.scale,
        "cell_limit_s": args.cell_limit_s,
        "drain_s": args.drain_s,
        "budget_s": args.budget_s,
        "request_timeout_s": REQUEST_TIMEOUT_S,
        "steward": {
            "STEWARD_RUN_SLOTS": STEWARD_RUN_SLOTS,
            "STEWARD_DB_POOL_MAX": STEWARD_DB_POOL_MAX,
            "log_level": "WARNING",
        },
        "langgraph_dev": {
            "N_JOBS_PER_WORKER": args.langgraph_jobs
            if args.langgraph_jobs is not None
            else "CLI default: 1 (langgraph_api/cli.py, no --n-jobs-per-worker)",
            "runtime": "inmem",
            "server_log_level": args.langgraph_log_level,
        },
        "total_s": total,
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"http_load-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"config": config, **out}, indent=2))
    print(f"\ntotal {total:.0f}s; raw results: {path}")


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
        "--scale",
        type=float,
        default=1.0,
        help="multiply every cell's iteration count (smoke runs)",
    )
    parser.add_argument(
        "--cell-limit-s",
        type=float,
        default=40.0,
        help="no iteration starts later than this into a cell",
    )
    parser.add_argument(
        "--drain-s",
        type=float,
        default=30.0,
        help="in-flight iterations get this long after the limit, then are cut",
    )
    parser.add_argument(
        "--budget-s",
        type=float,
        default=330.0,
        help="cells are shortened or skipped so the whole run fits in this",
    )
    parser.add_argument("--warmup-limit-s", type=float, default=15.0)
    parser.add_argument("--langgraph-log-level", default="WARNING")
    parser.add_argument(
        "--langgraph-jobs",
        type=int,
        default=None,
        help="pass --n-jobs-per-worker to langgraph dev (default: not passed = 1)",
    )
    main(parser.parse_args())
