"""Budget reservation cost against the size of the ledger: 0 rows, then 1,000,000 rows.

One model call's ledger work, `reserve` then `settle` through `PgUsageLedger` (three limited
scopes: thread, user day, tenant month), measured one at a time on the service's pool
(`core.db.pool.create_pool`, one connection, its checkout checks included), after warm-up
cycles that are not counted:

  empty     the tenant has no ledger rows
  1M rows   1,000,000 settled rows in the tenant's current UTC month (generate_series over
            100 users, 1,000 of them in the measured thread), counters filled as the
            migration's backfill would, then VACUUM ANALYZE and CHECKPOINT

With 1M rows, the tenant's cycles alternate in blocks of 100 with a new tenant's in the same
database (same conditions: cache, WAL, neighbours). Prints p50/p99 (nearest rank) of each,
the ratios to the empty database and 1M / new tenant, and the round trips per cycle:
client-to-server turns in a libpq trace of 20 cycles, and of them the pool's checkout checks
(`core.db.pool` checks only a connection that sat idle, so normally none).

Usage: python bench/ledger_scale.py [--cycles 2000] [--warmup 200] [--rows 1000000]
Run from the checkout to measure (`cd CHECKOUT && PYTHONPATH=$PWD .venv/bin/python
bench/ledger_scale.py`); on a checkout without `budget_counters` it measures the ledger as it
was (sums under advisory locks) the same way. Needs Postgres (STEWARD_BENCH_PG, default
postgresql://root@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import tempfile
import time
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path

from psycopg import pq
from scratch_db import scratch_database  # bench/ is on sys.path when run as a script

from core.budget.budgets import Payer
from core.budget.estimates import CallEstimate
from core.budget.ledger import PgUsageLedger
from core.db.migrate import migrate
from core.db.pool import DbPool, create_pool
from core.settings import Settings

TENANT = "bench-tenant"
FULL = Payer(tenant_id=TENANT, user_id="user-0", thread_id="bench-thread", run_id="bench-run")
EMPTY = Payer(tenant_id="bench-new", user_id="user-0", thread_id="new-thread", run_id="bench-run")
BLOCK = 100
"""Cycles per block: the 1M-row tenant's blocks alternate with a new tenant's, same run."""
ESTIMATE = CallEstimate(
    model="gpt-4o-mini", input_tokens=900, max_output_tokens=1024, usd=Decimal("0.0007")
)
TRACED_CYCLES = 20

BULK_INSERT = """
    INSERT INTO usage_ledger (run_id, thread_id, user_id, tenant_id, model, route, status,
                              estimated_input_tokens, max_output_tokens, reserved_usd,
                              input_tokens, output_tokens, cached_input_tokens, cost_usd,
                              usage_source, created_at, settled_at)
    SELECT 'bulk-' || (i / 4), CASE WHEN i %% 1000 = 0 THEN %(thread)s END,
           'user-' || (i %% 100), %(tenant)s, 'gpt-4o-mini', 'strong', 'settled',
           900, 1024, 0.0007, 880, 120, 0, 0.0002, 'provider', at, at
    FROM generate_series(1, %(rows)s) AS i,
         LATERAL (SELECT date_trunc('month', now(), 'UTC')
                         + (now() - date_trunc('month', now(), 'UTC')) * (i::float8 / %(rows)s)
                         - interval '1 second' AS at) AS t
"""

FILL_COUNTERS = """
    INSERT INTO budget_counters AS c (scope, tenant_id, subject, window_start, spent_usd)
    SELECT k.scope, r.tenant_id, k.subject, k.window_start, sum(r.cost_usd)
    FROM usage_ledger r
    CROSS JOIN LATERAL (VALUES
        ('tenant_month', '', date_trunc('month', r.created_at, 'UTC')),
        ('thread', r.thread_id, 'epoch'::timestamptz),
        ('user_day', r.user_id, date_trunc('day', r.created_at, 'UTC'))
    ) AS k (scope, subject, window_start)
    WHERE r.tenant_id = %(tenant)s AND r.run_id LIKE 'bulk-%%' AND k.subject IS NOT NULL
    GROUP BY 1, 2, 3, 4
    ON CONFLICT (scope, tenant_id, subject, window_start)
    DO UPDATE SET spent_usd = c.spent_usd + EXCLUDED.spent_usd
"""


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


async def cycle(ledger: PgUsageLedger, payer: Payer) -> None:
    reservation = await ledger.reserve(payer, ESTIMATE, route="strong")
    assert reservation.call_id is not None, reservation
    await ledger.settle(
        reservation.call_id,
        input_tokens=880,
        output_tokens=120,
        cached_input_tokens=0,
        cost_usd=Decimal("0.0002"),
        source="provider",
    )


async def timed(ledger: PgUsageLedger, payer: Payer, cycles: int) -> list[float]:
    out = []
    for _ in range(cycles):
        started = time.perf_counter()
        await cycle(ledger, payer)
        out.append((time.perf_counter() - started) * 1000)
    return out


async def interleaved(
    ledger: PgUsageLedger, payers: list[Payer], cycles: int, warmup: int
) -> list[list[float]]:
    """Latencies (ms) of each payer's cycles, in alternating blocks after a warm-up."""
    for payer in payers:
        await timed(ledger, payer, warmup)
    out: list[list[float]] = [[] for _ in payers]
    for start in range(0, cycles, BLOCK):
        for values, payer in zip(out, payers, strict=True):
            values += await timed(ledger, payer, min(BLOCK, cycles - start))
    return out


def turns(trace: Path) -> int:
    """Client-to-server turns: each run of frontend messages answered by the backend."""
    count, last = 0, ""
    for line in trace.read_text().splitlines():
        direction = line.split("\t", 1)[0]
        if direction == "B" and last == "F":
            count += 1
        if direction in ("F", "B"):
            last = direction
    return count


async def traced_turns(pool: DbPool, work: Callable[[], Awaitable[None]]) -> int:
    """Round trips of `work` on the pool's only connection (plus one checkout, to untrace)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace"
        with path.open("w") as sink:
            async with pool.connection() as conn:
                conn.pgconn.trace(sink.fileno())
                conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS)
            await work()
            async with pool.connection() as conn:
                conn.pgconn.untrace()
        return turns(path)


async def round_trips(pool: DbPool, ledger: PgUsageLedger, payer: Payer) -> tuple[float, float]:
    """(round trips per cycle, of which the pool's checkout checks: one per reserve and settle)."""

    async def cycles() -> None:
        for _ in range(TRACED_CYCLES):
            await cycle(ledger, payer)

    async def checkouts() -> None:
        for _ in range(TRACED_CYCLES):
            async with pool.connection():
                pass

    per_check = await traced_turns(pool, checkouts) / (TRACED_CYCLES + 1)
    total = (await traced_turns(pool, cycles) - per_check) / TRACED_CYCLES
    return total, 2 * per_check


async def fill(pool: DbPool, rows: int) -> float:
    started = time.perf_counter()
    async with pool.connection() as conn:
        await conn.execute(BULK_INSERT, {"rows": rows, "tenant": TENANT, "thread": "bench-thread"})
        row = await (
            await conn.execute("SELECT to_regclass('budget_counters') IS NOT NULL AS counters")
        ).fetchone()
        if row is not None and row["counters"]:
            await conn.execute(FILL_COUNTERS, {"tenant": TENANT})
            await conn.execute("VACUUM ANALYZE budget_counters")
        await conn.execute("VACUUM ANALYZE usage_ledger")
        await conn.execute("CHECKPOINT")  # not during the measurement
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    async with scratch_database() as url:
        settings = Settings(
            database_url=url,
            db_pool_min=1,
            db_pool_max=1,
            budget_user_day_usd=Decimal(10**6),
            budget_tenant_month_usd=Decimal(10**7),
            budget_thread_usd=Decimal(10**6),
        )
        pool = create_pool(url, settings)
        await pool.open(wait=True)
        try:
            await migrate(pool, url)
            ledger = PgUsageLedger(pool, settings)
            (empty,) = await interleaved(ledger, [FULL], args.cycles, args.warmup)
            empty_trips = await round_trips(pool, ledger, FULL)
            seconds = await fill(pool, args.rows)
            print(f"inserted {args.rows:,} ledger rows in the tenant's month in {seconds:.1f}s")
            new, full = await interleaved(ledger, [EMPTY, FULL], args.cycles, args.warmup)
            full_trips = await round_trips(pool, ledger, FULL)
        finally:
            await pool.close()
    rows = f"{args.rows:,} rows"
    results = {
        "empty database, 0 rows": (empty, empty_trips),
        f"{rows} db, a new tenant": (new, full_trips),
        f"{rows} in the month": (full, full_trips),
    }
    base = nearest_rank(empty, 0.5)
    print(f"\nreserve + settle, {args.cycles} cycles each after {args.warmup} warm-up (ms)")
    print(f"{'':>30} {'p50':>7} {'p99':>7} {'p50/empty':>9} {'round trips':>11} {'checks':>6}")
    for name, (values, (total, checks)) in results.items():
        p50, p99 = nearest_rank(values, 0.5), nearest_rank(values, 0.99)
        print(
            f"{name:>30} {p50:>7.3f} {p99:>7.3f} {p50 / base:>9.2f} {total:>11.1f} {checks:>6.1f}"
        )
    same_run = nearest_rank(full, 0.5) / nearest_rank(new, 0.5)
    print(f"1M-row tenant / new tenant, interleaved in the same run: p50 x{same_run:.2f}")
    print("round trips per cycle, the pool's checkout checks (`checks`) included")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--rows", type=int, default=1_000_000)
    asyncio.run(main(parser.parse_args()))
