"""Graph overhead: the full workflow against a bare graph of the same topology, same run.

Measures per-run latency (p50/p99) and runs/s at concurrency 1 for:
  bare        same nodes and edges, no work in the nodes, no checkpointer (the baseline)
  bare+pg     the bare graph with the Postgres checkpointer (durability "sync")
  full        the real workflow: FAISS retrieval, ChatOpenAI over HTTP to the mock (0 ms),
              guards, validation, Postgres checkpointer (durability "sync"), on
              bench/http_load.py's varied questions (a new one per run, as over HTTP)
and checkpoint bytes written per turn for 1-, 10- and 50-turn threads.

Usage: python bench/graph_overhead.py [--runs 200] [--turns 1 10 50]
Needs Postgres (STEWARD_BENCH_PG, default postgresql://root@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from langgraph.graph import StateGraph
from load_questions import question
from scratch_db import scratch_database  # bench/ is on sys.path when run as a script

from core.knowledge.embeddings import LocalEmbedder
from core.knowledge.ingest import ingest
from core.settings import Settings
from graph.builder import DURABILITY, add_edges
from graph.checkpointer import make_checkpointer
from graph.context import RunContext
from graph.state import InputState, State
from mock_llm.process import running_mock_llm
from steward.runtime import open_runtime

ROOT = Path(__file__).resolve().parents[1]
QUESTION = "How long is the return window?"


BENCH_CONTEXT = RunContext(user_id="bench", tenant_id="bench")
"""Who the benchmark runs as (budgets are charged to it)."""


def bare_graph(checkpointer: Any = None) -> Any:
    """The workflow's topology with nodes that do nothing but steer down the same path."""

    async def noop(state: State) -> dict[str, Any]:
        return {}

    async def validate(state: State) -> dict[str, Any]:
        return {"response": {"answer": "", "sources": [], "actions": [], "refusal": None}}

    builder = StateGraph(State, context_schema=RunContext, input_schema=InputState)
    for name in (
        "input_filter",
        "retrieve",
        "agent",
        "guard_tools",
        "approval",
        "run_tools",
        "finalize",
    ):
        builder.add_node(name, noop)
    builder.add_node("validate", validate)
    add_edges(builder)
    return builder.compile(checkpointer=checkpointer)


async def measure(
    run_once: Callable[[], Awaitable[None]], runs: int, warmup: int
) -> dict[str, float]:
    """Run sequentially; return p50/p99 latency in ms and runs/s."""
    for _ in range(warmup):
        await run_once()
    latencies: list[float] = []
    started = time.perf_counter()
    for _ in range(runs):
        t0 = time.perf_counter()
        await run_once()
        latencies.append((time.perf_counter() - t0) * 1000)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "p50_ms": statistics.median(latencies),
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "runs_per_s": runs / elapsed,
    }


def turn_input(text: str = QUESTION) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def config() -> dict[str, Any]:
    return {"configurable": {"thread_id": str(uuid.uuid4()), "user_id": "bench"}}


async def checkpoint_bytes(pool: Any, thread_id: str) -> dict[str, int]:
    """Bytes (pg_column_size of whole rows) and rows stored for one thread."""
    out: dict[str, int] = {}
    async with pool.connection() as conn:
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            row = await (
                await conn.execute(
                    f"SELECT count(*) AS n, coalesce(sum(pg_column_size(t.*)), 0) AS b "
                    f"FROM {table} t WHERE thread_id = %s",
                    (thread_id,),
                )
            ).fetchone()
            out[f"{table}_rows"] = int(row["n"])
            out[f"{table}_bytes"] = int(row["b"])
    out["total_bytes"] = sum(v for k, v in out.items() if k.endswith("_bytes"))
    return out


async def main(args: argparse.Namespace) -> None:
    async with scratch_database() as db_url:
        with tempfile.TemporaryDirectory() as home, running_mock_llm() as mock:
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
                await run_benchmarks(runtime, args)


async def run_benchmarks(runtime: Any, args: argparse.Namespace) -> None:
    bare = bare_graph()
    bare_pg = bare_graph(make_checkpointer(runtime.pool))

    async def run_bare() -> None:
        await bare.ainvoke(turn_input(), config())

    async def run_bare_pg() -> None:
        await bare_pg.ainvoke(turn_input(), config(), durability=DURABILITY)

    asked = itertools.count()

    async def run_full() -> None:
        # bench/http_load.py's varied questions: no embedding cache can stand in for the
        # query's embedding (the semantic guard's and the retriever's), as over HTTP.
        out = await runtime.graph.ainvoke(
            turn_input(question(next(asked))),
            config(),
            durability=DURABILITY,
            context=BENCH_CONTEXT,
        )
        assert out["response"]["answer"], "the full run must really answer"

    results = {
        "bare": await measure(run_bare, args.runs, args.warmup),
        "bare+pg": await measure(run_bare_pg, args.runs, args.warmup),
        "full": await measure(run_full, args.runs, args.warmup),
    }
    base = results["bare"]
    print(
        f"\n{'graph':<10} {'p50 ms':>9} {'p99 ms':>9} {'runs/s':>9} {'p50 x bare':>11} "
        f"{'runs/s / bare':>14}"
    )
    for name, r in results.items():
        slower = r["p50_ms"] / base["p50_ms"]
        rate = r["runs_per_s"] / base["runs_per_s"]
        print(
            f"{name:<10} {r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {r['runs_per_s']:>9.1f} "
            f"{slower:>11.1f} {rate:>14.3f}"
        )

    growth: dict[int, dict[str, int]] = {}
    for turns in args.turns:
        cfg = config()
        for _ in range(turns):
            await runtime.graph.ainvoke(
                turn_input(), cfg, durability=DURABILITY, context=BENCH_CONTEXT
            )
        growth[turns] = await checkpoint_bytes(runtime.pool, cfg["configurable"]["thread_id"])
    print(f"\n{'turns':>6} {'rows':>7} {'bytes':>11} {'bytes/turn':>11}")
    for turns, stats in growth.items():
        rows = sum(v for k, v in stats.items() if k.endswith("_rows"))
        print(
            f"{turns:>6} {rows:>7} {stats['total_bytes']:>11} {stats['total_bytes'] / turns:>11.0f}"
        )

    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"graph_overhead-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps({"latency": results, "checkpoint_growth": growth}, indent=2))
    print(f"\nraw results: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--turns", type=int, nargs="+", default=[1, 10, 50])
    asyncio.run(main(parser.parse_args()))
