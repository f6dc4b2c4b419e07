"""Stream completeness: do streamed runs deliver, store and replay their end? (issue 9, 1)

One `steward serve` (development, fresh STEWARD_HOME, demo orders) on a scratch database and
the mock LLM (0 ms latency). For each concurrency (default 1, 4 and 20), N streams (default
200), each on a new thread: `POST /threads/{id}/runs/stream` with `stream_mode: ["values",
"updates"]`, `stream_resumable: true` and a policy question or a small refund (no approval).
A stream is complete when all of these hold:

  final     the live stream received a final `values` event holding the `response`
  finalize  it received the `finalize` update
  replay    `GET /threads/{id}/runs/{run_id}/stream` with `Last-Event-ID: 0` replays every
            event after the first and ends with the same final event (same id, same data)
  stored    the run is `success` and its `run_events` rows are gapless (seq 0..n-1), as many
            as the live stream received, the last one equal to the live stream's last event

Prints, per concurrency, complete/N, the failures per check (with a few samples), the wall
time, streams per second and the p50/p99 stream latency.

Usage: python bench/stream_completeness.py [--streams 200] [--concurrency 1 4 20]
Run from a checkout with that checkout first on the path:
  cd CHECKOUT && PYTHONPATH=$PWD .venv/bin/python bench/stream_completeness.py
Needs Postgres (STEWARD_BENCH_PG, default postgresql://root@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from latency_stats import percentile
from refund_path import child_env, code_under_test, run_cli, running_server, tail
from scratch_db import scratch_database

from mock_llm.process import running_mock_llm
from tests.chaos.sse import read_events

TENANT = "bench-streams"
TEXTS = ("How long is the return window?", "Refund $1 on LS-10017 please.")
CHECKS = ("final", "finalize", "replay", "stored")
STREAM_TIMEOUT_S = 120.0


@dataclass
class Result:
    concurrency: int
    streams: int
    complete: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    wall_s: float = 0.0


def brief(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


async def collect(response: httpx.Response) -> list[tuple[int | None, str, Any]]:
    if response.status_code != 200:
        text = (await response.aread()).decode(errors="replace")
        raise RuntimeError(f"HTTP {response.status_code}: {text[:200]}")
    return [(e.id, e.event, e.data) async for e in read_events(response)]


async def stored_rows(db_url: str, run_id: str) -> tuple[str | None, list[Any]]:
    """The run's status and its `run_events` rows `(seq, event, data)` in seq order."""
    async with await psycopg.AsyncConnection.connect(db_url) as db:
        cur = await db.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
        row = await cur.fetchone()
        cur = await db.execute(
            "SELECT seq, event, data FROM run_events WHERE run_id = %s ORDER BY seq", (run_id,)
        )
        rows = await cur.fetchall()
    return (row[0] if row else None), [tuple(r) for r in rows]


async def one_stream(http: httpx.AsyncClient, db_url: str, i: int, result: Result) -> None:
    started = time.perf_counter()
    problems: list[tuple[str, str]] = []
    try:
        thread = (await http.post("/threads", json={})).json()["thread_id"]
        body = {
            "assistant_id": "agent",
            "stream_mode": ["values", "updates"],
            "stream_resumable": True,
            "input": {"messages": [{"role": "user", "content": TEXTS[i % len(TEXTS)]}]},
        }
        async with http.stream("POST", f"/threads/{thread}/runs/stream", json=body) as r:
            live = await collect(r)
        result.latencies.append(time.perf_counter() - started)
        run_id = next((d["run_id"] for _, e, d in live if e == "metadata"), None)
        last = live[-1] if live else None
        if not (
            last and last[1] == "values" and isinstance(last[2], dict) and last[2].get("response")
        ):
            problems.append(("final", f"last live event {brief(last)}"))
        if not any(e == "updates" and isinstance(d, dict) and "finalize" in d for _, e, d in live):
            problems.append(("finalize", f"{len(live)} live events, no finalize update"))
        if run_id is None:
            problems.append(("replay", "no metadata event: no run id"))
        else:
            async with http.stream(
                "GET", f"/threads/{thread}/runs/{run_id}/stream", headers={"Last-Event-ID": "0"}
            ) as r:
                replay = await collect(r)
            if replay != live[1:]:
                problems.append(
                    (
                        "replay",
                        f"replay {len(replay)} events (last"
                        f" {brief(replay[-1] if replay else None)}), live {len(live)}",
                    )
                )
            status, rows = await stored_rows(db_url, run_id)
            seqs = [r[0] for r in rows]
            if (
                status != "success"
                or seqs != list(range(len(live)))
                or (rows[-1:] != [tuple(last or ())])
            ):
                problems.append(
                    (
                        "stored",
                        f"status {status}, {len(rows)} rows for"
                        f" {len(live)} live events, gapless:"
                        f" {seqs == list(range(len(seqs)))}, last stored"
                        f" {brief(rows[-1] if rows else None)}",
                    )
                )
    except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as exc:
        problems.append(("final", f"{type(exc).__name__}: {exc}"))
    for check, detail in problems:
        result.failed[check] += 1
        if len(result.samples) < 6:
            result.samples.append(f"stream {i} {check}: {detail}")
    if not problems:
        result.complete += 1


async def measure(base_url: str, key: str, db_url: str, concurrency: int, streams: int) -> Result:
    result = Result(concurrency, streams)
    limits = httpx.Limits(
        max_connections=concurrency * 2 + 4, max_keepalive_connections=concurrency * 2 + 4
    )
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(streams):
        queue.put_nowait(i)
    async with httpx.AsyncClient(
        base_url=base_url, headers={"x-api-key": key}, timeout=STREAM_TIMEOUT_S, limits=limits
    ) as http:

        async def worker() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                async with asyncio.timeout(STREAM_TIMEOUT_S * 2):
                    await one_stream(http, db_url, i, result)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_s = time.perf_counter() - started
    return result


def report(results: list[Result]) -> None:
    print(
        f"\n{'concurrency':>11} {'complete':>10} "
        + " ".join(f"{c:>9}" for c in CHECKS)
        + f" {'wall s':>8} {'streams/s':>9} {'p50 ms':>8} {'p99 ms':>8}"
    )
    for r in results:
        p50, p99 = percentile(r.latencies, 50), percentile(r.latencies, 99)
        print(
            f"{r.concurrency:>11} {f'{r.complete}/{r.streams}':>10} "
            + " ".join(f"{r.failed[c]:>9}" for c in CHECKS)
            + f" {r.wall_s:>8.1f} {r.streams / r.wall_s:>9.2f}"
            f" {(p50 or 0) * 1000:>8.0f} {(p99 or 0) * 1000:>8.0f}"
        )
    print("(check columns: streams failing that check)")
    for r in results:
        for sample in r.samples:
            print(f"  c={r.concurrency}: {sample}")


async def bench(args: argparse.Namespace) -> list[Result]:
    results: list[Result] = []
    async with scratch_database() as db_url:
        with tempfile.TemporaryDirectory(prefix="steward-streams-") as tmp:
            work = Path(tmp)
            with running_mock_llm(latency_ms=0) as mock:
                env = child_env(db_url, work / "home", mock.base_url)
                env["STEWARD_RUN_SLOTS"] = str(max(10, max(args.concurrency)))
                env["STEWARD_DB_POOL_MAX"] = "30"
                print(
                    f"code under test: {await asyncio.to_thread(code_under_test, env)}", flush=True
                )
                await asyncio.to_thread(run_cli, env, "seed")
                out = await asyncio.to_thread(
                    run_cli,
                    env,
                    "keys",
                    "create",
                    "--user",
                    "bench-user",
                    "--role",
                    "user",
                    "--tenant",
                    TENANT,
                )
                key = out.strip().splitlines()[-1].strip()
                log = work / "server.log"
                with running_server(env, log) as (base_url, process):
                    for concurrency in args.concurrency:
                        print(f"concurrency {concurrency}: {args.streams} streams...", flush=True)
                        r = await measure(base_url, key, db_url, concurrency, args.streams)
                        print(f"  {r.complete}/{r.streams} complete in {r.wall_s:.1f}s", flush=True)
                        results.append(r)
                    if process.poll() is not None:
                        print(f"server exited early:\n{tail(log)}")
    return results


def interrupt_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=200, help="streams per concurrency")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 20])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    started = time.perf_counter()
    try:
        results = asyncio.run(bench(args))
    except KeyboardInterrupt:
        print("interrupted: subprocesses stopped, scratch database dropped", file=sys.stderr)
        sys.exit(130)
    report(results)
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
