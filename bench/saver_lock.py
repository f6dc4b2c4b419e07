"""AsyncPostgresSaver's instance lock (langgraph #7259) against StewardSaver, which drops it.

Runs/s of a 3-step graph (durability "sync") at concurrency 1, 4 and 16, with LangGraph's
saver (one statement at a time per instance) and with StewardSaver (one connection per cursor
from the pool), on the same pool, in the same run; prints the ratio steward/langgraph.
`--rtt-ms` adds a round trip to every statement, as a database across a
network would. Needs Postgres (STEWARD_BENCH_PG, default postgresql://root@127.0.0.1/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any, TypedDict, cast

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from psycopg import AsyncCursor
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool
from scratch_db import scratch_database  # bench/ is on sys.path when run as a script

from core.db.migrate import migrate
from core.db.pool import DbPool
from core.guardrails.serde import RedactingSerializer
from graph.checkpointer import make_checkpointer

RTT_S = 0.0


class State(TypedDict, total=False):
    n: int
    text: str


class DelayedCursor(AsyncCursor[Any]):
    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        if RTT_S:
            await asyncio.sleep(RTT_S)
        return await super().execute(*args, **kwargs)


def tiny_graph(saver: Any) -> Any:
    async def step(state: State) -> State:
        return {"n": state.get("n", 0) + 1, "text": "x" * 200}

    builder = StateGraph(State)
    for name in ("a", "b", "c"):
        builder.add_node(name, step)
    builder.add_edge(START, "a")
    builder.add_edge("a", "b")
    builder.add_edge("b", "c")
    builder.add_edge("c", END)
    return builder.compile(checkpointer=saver)


async def runs_per_second(graphs: list[Any], concurrency: int, total: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            await graphs[i % len(graphs)].ainvoke(
                {"n": 0}, {"configurable": {"thread_id": str(uuid.uuid4())}}, durability="sync"
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(total)))
    return total / (time.perf_counter() - started)


async def main(args: argparse.Namespace) -> None:
    global RTT_S
    RTT_S = args.rtt_ms / 1000
    kwargs = {
        "autocommit": True,
        "prepare_threshold": 0,
        "row_factory": dict_row,
        "cursor_factory": DelayedCursor,
    }
    async with (
        scratch_database() as url,
        AsyncConnectionPool(url, min_size=20, max_size=20, kwargs=kwargs, open=False) as pool,
    ):
        await pool.open(wait=True)
        await migrate(cast("DbPool", pool), url)  # the dict_row factory is in `kwargs`
        results: dict[tuple[str, int], list[float]] = {}
        shared = cast("DbPool", pool)
        savers: dict[str, Callable[[], AsyncPostgresSaver]] = {
            "langgraph": lambda: AsyncPostgresSaver(shared, serde=RedactingSerializer()),
            "steward": lambda: make_checkpointer(shared),
        }
        for _ in range(args.repeats):
            for name, saver in savers.items():
                graph = tiny_graph(saver())
                for concurrency in (1, 4, 16):
                    total = 20 if concurrency == 1 else 64
                    rps = await runs_per_second([graph], concurrency, total)
                    results.setdefault((name, concurrency), []).append(rps)
    median = {key: statistics.median(v) for key, v in results.items()}
    print(f"rtt {args.rtt_ms} ms, median of {args.repeats} repeats (runs/s)")
    print(f"{'concurrency':>11} {'langgraph':>10} {'steward':>9} {'ratio':>7}")
    for concurrency in (1, 4, 16):
        lg, st = median[("langgraph", concurrency)], median[("steward", concurrency)]
        print(f"{concurrency:>11} {lg:>10.1f} {st:>9.1f} {st / lg:>7.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rtt-ms", type=float, default=0.0)
    parser.add_argument("--repeats", type=int, default=3)
    asyncio.run(main(parser.parse_args()))
