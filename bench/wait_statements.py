"""Statements per `/threads/{id}/runs/wait` run, counted by Postgres (`pg_stat_statements`).

One iteration is `POST /threads {}` then `POST /threads/{id}/runs/wait` (one question), as in
bench/http_load.py. A `steward serve` runs against a scratch database; after a warm-up the
statistics of that database alone are reset (other databases on the server are untouched),
`--runs` iterations run with `--concurrency` clients, and the statements the database saw are
printed per completed run, grouped by what they do, with their execution time, next to the
round trips the server made (counted by a proxy in front of Postgres, bench/round_trip_proxy.py:
pipelined statements share one; the server's idle polls and lease renewals are included).

Usage: python bench/wait_statements.py [--runs 100] [--concurrency 20] [--latency-ms 0]
Postgres: STEWARD_BENCH_PG (with `pg_stat_statements` in `shared_preload_libraries` and a role
that may create extensions) or, unset, a throwaway cluster that preloads it (bench/pg_cluster.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
from pg_cluster import find_bindir, throwaway_cluster  # bench/ is on sys.path as a script
from psycopg.rows import dict_row
from round_trip_proxy import RoundTripProxy
from scratch_db import scratch_database
from servers import base_env, create_key, running_server

from mock_llm.process import running_mock_llm

ROOT = Path(__file__).resolve().parents[1]
BODY = {
    "assistant_id": "agent",
    "input": {"messages": [{"role": "user", "content": "How long is the return window?"}]},
}
GROUPS: tuple[tuple[str, str], ...] = (
    ("run_events insert", r"^insert into run_events"),
    ("pg_notify", r"pg_notify"),
    ("wait: select status, output", r"^select status, output"),
    ("stream: tail run_events", r"left join lateral \(select seq, event, data from run_events"),
    ("run_events other", r"run_events"),
    ("checkpoints", r"checkpoint"),
    ("runs", r"\bruns\b"),
    ("threads", r"\bthreads\b"),
    ("begin/commit", r"^(begin|commit|rollback)\b"),
)
"""Statement groups, first match wins (patterns on the lower-cased, normalized query)."""


def group_of(query: str) -> str:
    """The group of one normalized statement."""
    text = " ".join(query.lower().split())
    for name, pattern in GROUPS:
        if re.search(pattern, text):
            return name
    return "other"


FAILURES: Counter[str] = Counter()


async def iteration(client: httpx.AsyncClient) -> bool:
    """One create-thread + wait; True when the run answered a response."""
    thread = (await client.post("/threads", json={})).json()["thread_id"]
    waited = await client.post(f"/threads/{thread}/runs/wait", json=BODY)
    data = waited.json() if waited.status_code == 200 else {}
    if isinstance(data, dict) and isinstance(data.get("response"), dict):
        return True
    FAILURES[f"{waited.status_code} {waited.text[:200]}"] += 1
    return False


async def drive(client: httpx.AsyncClient, runs: int, concurrency: int) -> int:
    """Run `runs` iterations on `concurrency` clients; return how many succeeded."""
    todo = iter(range(runs))
    ok = 0

    async def worker() -> None:
        nonlocal ok
        for _ in todo:
            answered = await iteration(client)  # not `ok += await ...`: it reads `ok` first
            ok += answered

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return ok


def statements(db_url: str) -> list[dict[str, Any]]:
    """This database's statements as pg_stat_statements holds them."""
    with psycopg.connect(db_url, autocommit=True, row_factory=dict_row) as conn:
        return conn.execute(
            "SELECT query, calls, total_exec_time AS ms, rows FROM pg_stat_statements"
            " WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND query NOT LIKE '%%pg_stat_statements%%'"
        ).fetchall()


def reset(db_url: str) -> None:
    """Forget this database's statement statistics (no other database's)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database"
            " WHERE datname = current_database()), 0)"
        )


def report(rows: list[dict[str, Any]], runs: int, top: int, turns: int) -> None:
    """Print statements and round trips per run, by group and the most frequent ones."""
    calls: Counter[str] = Counter()
    ms: Counter[str] = Counter()
    for row in rows:
        calls[group_of(row["query"])] += row["calls"]
        ms[group_of(row["query"])] += row["ms"]
    total = sum(calls.values())
    print(
        f"\nper completed run ({runs} runs): {total / runs:.1f} statements,"
        f" {sum(ms.values()) / runs:.2f} ms executing, {turns / runs:.1f} round trips"
    )
    for name, n in calls.most_common():
        print(f"  {n / runs:7.2f}  {ms[name] / runs:7.2f} ms  {name}")
    print(f"\ntop {top} statements (calls per run, ms per run):")
    for row in sorted(rows, key=lambda r: -r["calls"])[:top]:
        query = " ".join(row["query"].split())
        print(f"  {row['calls'] / runs:7.2f}  {row['ms'] / runs:7.2f}  {query[:150]}")


async def bench(args: argparse.Namespace) -> None:
    """Scratch database, mock LLM and server; warm up, reset, measure, report."""
    from core.knowledge.embeddings import LocalEmbedder
    from core.knowledge.ingest import ingest

    async with scratch_database() as db_url:
        with tempfile.TemporaryDirectory(prefix="steward-wait-statements-") as tmp:
            work = Path(tmp)
            home = work / "home"
            await asyncio.to_thread(
                ingest,
                [ROOT / "data" / "policies"],
                home / "index",
                LocalEmbedder(),
                progress=False,
            )
            proxy = RoundTripProxy(db_url)
            with running_mock_llm(latency_ms=args.latency_ms) as mock:
                key = await asyncio.to_thread(
                    create_key, base_env(db_url, home, mock.base_url)
                )  # also migrates the database
                env = base_env(proxy.start(), home, mock.base_url)
                with psycopg.connect(db_url, autocommit=True) as conn:
                    conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                with running_server("steward", env, work, key, "warning", None) as srv:
                    limits = httpx.Limits(max_connections=args.concurrency)
                    async with httpx.AsyncClient(
                        base_url=srv.base_url, headers=srv.headers, limits=limits, timeout=120
                    ) as client:
                        await drive(client, args.concurrency, args.concurrency)  # warm-up
                        await asyncio.sleep(1.0)
                        reset(db_url)
                        proxy.reset()
                        t0 = time.perf_counter()
                        ok = await drive(client, args.runs, args.concurrency)
                        took = time.perf_counter() - t0
                        turns = proxy.turns
                    rows = statements(db_url)
                proxy.close()
    print(
        f"{ok}/{args.runs} runs answered at c={args.concurrency} in {took:.1f} s"
        f" (mock latency {args.latency_ms} ms)"
    )
    for failure, n in FAILURES.most_common(5):
        print(f"  failed {n}x: {failure}")
    report(rows, max(ok, 1), args.top, turns)


def main() -> None:
    """Parse the arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--latency-ms", type=int, default=0)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        if "STEWARD_BENCH_PG" not in os.environ and (bindir := find_bindir()) is not None:
            cluster = stack.enter_context(throwaway_cluster(bindir))
            os.environ["STEWARD_BENCH_PG"] = cluster.admin_url
            print(f"postgres: {cluster.description}")
        asyncio.run(bench(args))


if __name__ == "__main__":
    main()
