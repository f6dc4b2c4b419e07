"""Observability overhead: the same graph run with logging, metrics and tracing off and on.

Modes, interleaved in rounds within one process so drift (CPU, Postgres cache) hits all alike:
  off           no callbacks; root logger at WARNING (the nodes' INFO lines are dropped)
  logs+metrics  JSON logs at INFO to /dev/null + Prometheus metrics (RunObserver, no spans)
  +otel         ... + OpenTelemetry spans, batched and exported over OTLP/HTTP to a local sink
  +langsmith    ... + LangSmith tracer, batched multipart posts to the same local sink

Workloads:
  full   the real workflow (FAISS, ChatOpenAI over HTTP to the mock at 0 ms, Postgres
         checkpointer, durability "sync"), one policy question per run (5 nodes, 1 LLM call)
  bare   the same topology with no-op nodes and no checkpointer: isolates the CPU cost of the
         instrumentation per run (the worst case, in relative terms)

Usage: python bench/observability_overhead.py [--runs 200] [--rounds 4] [--bare-runs 1000]
Needs Postgres (STEWARD_BENCH_PG, default postgresql://root@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
from langchain_core.runnables import RunnableConfig

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graph_overhead import bare_graph  # noqa: E402  (bench/ is on sys.path when run as a script)

from core.knowledge.embeddings import LocalEmbedder  # noqa: E402
from core.knowledge.ingest import ingest  # noqa: E402
from core.observability import (  # noqa: E402
    configure_logging,
    configure_tracing,
    flush_tracing,
    shutdown_tracing,
)
from core.observability.langsmith import langsmith_tracer, reset_langsmith  # noqa: E402
from core.settings import Settings  # noqa: E402
from graph.builder import DURABILITY  # noqa: E402
from graph.context import RunContext  # noqa: E402
from graph.observer import instrument_run_config  # noqa: E402
from mock_llm.process import running_mock_llm  # noqa: E402
from steward.runtime import open_runtime  # noqa: E402

QUESTION = "How long is the return window?"
MODES = ("off", "logs+metrics", "+otel", "+langsmith", "+langsmith-raw")
"""`+langsmith-raw`: the same as `+langsmith` without the PII masking of LangSmith payloads."""


@contextmanager
def sink() -> Iterator[dict[str, int]]:
    """A loopback HTTP server that accepts OTLP and LangSmith posts and counts them."""
    stats = {"requests": 0, "bytes": 0}
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def do_POST(self) -> None:
            size = int(self.headers.get("content-length") or 0)
            self.rfile.read(size)
            with lock:
                stats["requests"] += 1
                stats["bytes"] += size
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_PATCH = do_POST

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    stats["port"] = server.server_address[1]
    try:
        yield stats
    finally:
        server.shutdown()
        server.server_close()


def make_config(mode: str, ls_env: dict[str, str]) -> RunnableConfig:
    base: RunnableConfig = {
        "configurable": {"thread_id": str(uuid.uuid4()), "user_id": "bench", "tenant_id": "bench"}
    }
    if mode == "off":
        return base
    callbacks: list[Any] = []
    if mode.startswith("+langsmith"):
        env = {**ls_env, "STEWARD_LANGSMITH_REDACT": "false" if mode.endswith("raw") else "true"}
        tracer = langsmith_tracer(env)
        assert tracer is not None
        callbacks.append(tracer)
    base["callbacks"] = callbacks
    return instrument_run_config(
        base, run_id=str(uuid.uuid4()), otel=mode != "logs+metrics", langsmith=False
    )


def set_mode(mode: str) -> None:
    logging.getLogger().setLevel(logging.WARNING if mode == "off" else logging.INFO)


async def measure(
    modes: tuple[str, ...],
    run_once: Callable[[str], Awaitable[None]],
    runs: int,
    rounds: int,
    warmup: int,
) -> dict[str, dict[str, float]]:
    """Interleave modes in `rounds` blocks of `runs // rounds`; return per-mode statistics."""
    for mode in modes:
        set_mode(mode)
        for _ in range(warmup):
            await run_once(mode)
    latencies: dict[str, list[float]] = {mode: [] for mode in modes}
    elapsed: dict[str, float] = dict.fromkeys(modes, 0.0)
    cpu: dict[str, float] = dict.fromkeys(modes, 0.0)
    block = max(1, runs // rounds)
    for _ in range(rounds):
        for mode in modes:
            set_mode(mode)
            started, cpu_started = time.perf_counter(), time.process_time()
            for _ in range(block):
                t0 = time.perf_counter()
                await run_once(mode)
                latencies[mode].append((time.perf_counter() - t0) * 1000)
            elapsed[mode] += time.perf_counter() - started
            # This process only (all its threads: exporters included); not Postgres or the mock.
            cpu[mode] += time.process_time() - cpu_started
    out: dict[str, dict[str, float]] = {}
    for mode in modes:
        values = sorted(latencies[mode])
        out[mode] = {
            "p50_ms": statistics.median(values),
            "p99_ms": values[min(len(values) - 1, int(len(values) * 0.99))],
            "mean_ms": statistics.fmean(values),
            "runs_per_s": len(values) / elapsed[mode],
            "cpu_ms_per_run": cpu[mode] / len(values) * 1000,
            "runs": len(values),
        }
    return out


def report(title: str, results: dict[str, dict[str, float]]) -> None:
    base = results["off"]
    print(f"\n{title}")
    print(
        f"{'mode':<15} {'p50 ms':>8} {'p99 ms':>8} {'runs/s':>8} {'vs off':>7} "
        f"{'CPU ms/run':>11} {'+CPU ms':>8}"
    )
    for mode, r in results.items():
        print(
            f"{mode:<15} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['runs_per_s']:>8.1f} "
            f"{r['runs_per_s'] / base['runs_per_s']:>7.3f} {r['cpu_ms_per_run']:>11.2f} "
            f"{r['cpu_ms_per_run'] - base['cpu_ms_per_run']:>8.2f}"
        )


async def main(args: argparse.Namespace, devnull: Any) -> None:
    admin_url = os.environ.get("STEWARD_BENCH_PG", "postgresql://root@127.0.0.1:5432/postgres")
    db_name = f"steward_bench_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{db_name}"')
    db_url = f"{admin_url.rsplit('/', 1)[0]}/{db_name}"
    configure_logging(fmt="json", level="INFO", stream=devnull, force=True)
    try:
        with tempfile.TemporaryDirectory() as home, running_mock_llm() as mock, sink() as stats:
            sink_url = f"http://127.0.0.1:{stats['port']}"
            configure_tracing(endpoint=sink_url, set_global=False)
            ls_env = {
                "LANGSMITH_TRACING": "true",
                "LANGSMITH_ENDPOINT": sink_url,
                "LANGSMITH_API_KEY": "bench",
                "LANGSMITH_PROJECT": "bench",
            }
            t0 = time.perf_counter()
            ingest(
                [ROOT / "data" / "policies"], Path(home) / "index", LocalEmbedder(), progress=False
            )
            print(f"index built in {time.perf_counter() - t0:.1f}s")
            settings = Settings(  # type: ignore[call-arg]
                STEWARD_HOME=home,
                DATABASE_URL=db_url,
                OPENAI_BASE_URL=mock.base_url,
                OPENAI_API_KEY="bench",
            )
            async with open_runtime(settings) as runtime:
                bare = bare_graph()

                async def run_bare(mode: str) -> None:
                    await bare.ainvoke(
                        {"messages": [{"role": "user", "content": QUESTION}]},
                        make_config(mode, ls_env),
                    )

                async def run_full(mode: str) -> None:
                    out = await runtime.graph.ainvoke(
                        {"messages": [{"role": "user", "content": QUESTION}]},
                        make_config(mode, ls_env),
                        durability=DURABILITY,
                        context=RunContext(user_id="bench", tenant_id="bench"),
                    )
                    assert out["response"]["sources"], "the full run must really answer"

                results = {
                    "bare": await measure(
                        MODES, run_bare, args.bare_runs, args.rounds, args.warmup
                    ),
                    "full": await measure(MODES, run_full, args.runs, args.rounds, args.warmup),
                }
            flush_tracing()
            reset_langsmith()
            report(
                "bare graph (no-op nodes, no checkpointer): instrumentation CPU per run",
                results["bare"],
            )
            report(
                "full workflow (FAISS + mock LLM over HTTP + Postgres, sync durability)",
                results["full"],
            )
            print(f"\nsink received {stats['requests']} exports, {stats['bytes']} bytes")
    finally:
        shutdown_tracing()
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')

    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"observability_overhead-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2))
    print(f"raw results: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="full-graph runs per mode")
    parser.add_argument("--bare-runs", type=int, default=1000, help="bare-graph runs per mode")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=10)
    with open(os.devnull, "w") as null:
        asyncio.run(main(parser.parse_args(), null))
