"""Budget counters against real Postgres: concurrency, a model of the ledger, expiry, backfill.

The ledger's promise (core.budget.ledger): concurrent reservations never together exceed a
budget, so spend stays within budget plus what calls cost beyond their own reservation; every
counter equals the sum over the ledger rows charged to it; a reservation never settled stops
counting after the TTL. These tests check it through `PgUsageLedger` and read the database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from alembic import command
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from psycopg import AsyncConnection, AsyncCursor
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from core.budget.budgets import Payer, Scope
from core.budget.estimates import CallEstimate
from core.budget.ledger import PgUsageLedger
from core.db.migrate import alembic_config, run_migrations, to_sqlalchemy_url
from core.db.pool import DbPool
from core.settings import Settings

pytestmark = pytest.mark.integration

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
Key = tuple[str, str, str, datetime]
"""A counter: (scope, tenant_id, subject, window_start)."""

USD = st.integers(min_value=0, max_value=10_000).map(lambda n: Decimal(n) / 10_000)
"""Amounts up to $1 with four decimals (the ledger keeps ten)."""
LIMIT = st.one_of(
    st.none(), st.integers(min_value=0, max_value=30_000).map(lambda n: Decimal(n) / 10_000)
)

PROPERTY = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def ledger_with(pool: DbPool, **update: Any) -> PgUsageLedger:
    return PgUsageLedger(pool, Settings().model_copy(update=update))


def estimate(usd: Decimal) -> CallEstimate:
    return CallEstimate(model="gpt-4o-mini", input_tokens=10, max_output_tokens=10, usd=usd)


async def settle(ledger: PgUsageLedger, call_id: str, usd: Decimal) -> None:
    await ledger.settle(
        call_id,
        input_tokens=10,
        output_tokens=10,
        cached_input_tokens=0,
        cost_usd=usd,
        source="provider",
    )


def keys_of(tenant: str, user: str, thread: str | None, at: datetime) -> list[Key]:
    """The counters a call of this payer at `at` is charged to (UTC windows)."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    keys = [("tenant_month", tenant, "", day.replace(day=1)), ("user_day", tenant, user, day)]
    if thread is not None:
        keys.append(("thread", tenant, thread, EPOCH))
    return keys


async def rows_of(pool: DbPool, tenant: str) -> list[DictRow]:
    async with pool.connection() as conn:
        return await (
            await conn.execute("SELECT * FROM usage_ledger WHERE tenant_id = %s", (tenant,))
        ).fetchall()


async def counters_of(pool: DbPool, tenant: str) -> dict[Key, tuple[Decimal, Decimal]]:
    async with pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT * FROM budget_counters WHERE tenant_id = %s", (tenant,))
        ).fetchall()
    return {
        (r["scope"], r["tenant_id"], r["subject"], r["window_start"]): (
            r["spent_usd"],
            r["reserved_usd"],
        )
        for r in rows
    }


def sums_of(rows: list[DictRow]) -> dict[Key, tuple[Decimal, Decimal]]:
    """What every counter must hold: settled costs, and reservations held (not expired)."""
    sums: dict[Key, tuple[Decimal, Decimal]] = {}
    for row in rows:
        spent = row["cost_usd"] if row["status"] == "settled" else Decimal(0)
        held = row["status"] == "reserved" and row["held_until"] and not row["expired_at"]
        reserved = row["reserved_usd"] if held else Decimal(0)
        for key in keys_of(row["tenant_id"], row["user_id"], row["thread_id"], row["created_at"]):
            old_spent, old_reserved = sums.get(key, (Decimal(0), Decimal(0)))
            sums[key] = (old_spent + spent, old_reserved + reserved)
    return sums


async def assert_counters_match_the_ledger(pool: DbPool, tenant: str) -> list[DictRow]:
    """Every counter holds its rows' sums; a counter without rows (a refusal made it) is 0."""
    rows = await rows_of(pool, tenant)
    counters, sums = await counters_of(pool, tenant), sums_of(rows)
    assert sums.keys() <= counters.keys()
    assert counters == {key: sums.get(key, (Decimal(0), Decimal(0))) for key in counters}
    return rows


# --------------------------------------------------------------------------- concurrency

PAYERS = ((0, 0), (0, 1), (1, 1), (1, None))
"""(user, thread) pairs of a tenant: users share threads and the tenant's month."""


def payer(tenant: str, index: int) -> Payer:
    user, thread = PAYERS[index]
    return Payer(
        tenant_id=tenant,
        user_id=f"u{user}",
        thread_id=None if thread is None else f"{tenant}-t{thread}",
        run_id=None,
    )


def limited_keys(p: Payer, limits: dict[Scope, Decimal | None]) -> dict[Scope, str]:
    """The scopes with a limit that a call of `p` is charged to, and an id of each."""
    ids: dict[Scope, str | None] = {
        "user_day": p.user_id,
        "tenant_month": "",
        "thread": p.thread_id,
    }
    return {s: i for s, i in ids.items() if i is not None and limits[s] is not None}


@dataclass(frozen=True)
class Call:
    payer: int
    """Index into PAYERS."""
    usd: Decimal
    """The estimate reserved."""
    tenths: int
    """Actual cost in tenths of the estimate; 0: the call fails and is released."""


CALLS = st.builds(Call, st.integers(0, len(PAYERS) - 1), USD, st.integers(0, 10))


@PROPERTY
@given(
    limits=st.fixed_dictionaries({"user_day": LIMIT, "tenant_month": LIMIT, "thread": LIMIT}),
    calls=st.lists(CALLS, min_size=10, max_size=60),
    overshoot=st.integers(0, 59),
)
async def test_concurrent_reservations_never_exceed_a_budget(
    db_pool: DbPool, limits: dict[Scope, Decimal | None], calls: list[Call], overshoot: int
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    ledger = ledger_with(
        db_pool,
        budget_user_day_usd=limits["user_day"],
        budget_tenant_month_usd=limits["tenant_month"],
        budget_thread_usd=limits["thread"],
    )
    payers = [payer(tenant, c.payer) for c in calls]
    reservations = await asyncio.gather(
        *(
            ledger.reserve(p, estimate(c.usd), route=None)
            for p, c in zip(payers, calls, strict=True)
        )
    )
    event(f"{sum(r.granted for r in reservations)} of {len(calls)} granted")

    # In the database, every budget holds the reservations granted, and a refusal means the
    # call did not fit.
    rows = await assert_counters_match_the_ledger(db_pool, tenant)
    assert sorted(str(r["call_id"]) for r in rows) == sorted(
        r.call_id for r in reservations if r.call_id
    )
    held: dict[tuple[Scope, str], Decimal] = defaultdict(Decimal)
    for row in rows:
        assert row["status"] == "reserved"
        p = Payer(row["tenant_id"], row["user_id"], row["thread_id"], None)
        for scope, ident in limited_keys(p, limits).items():
            held[scope, ident] += row["reserved_usd"]
    for (scope, _), total in held.items():
        assert total <= (limits[scope] or 0)
    for p, c, r in zip(payers, calls, reservations, strict=True):
        if r.exceeded is not None:
            ident = limited_keys(p, limits)[r.exceeded]
            assert held[r.exceeded, ident] + c.usd > (limits[r.exceeded] or 0)

    # Calls cost at most their estimate, but one of them twice: spend stays within the budget
    # plus that one call's estimate.
    granted = [(r.call_id, c) for r, c in zip(reservations, calls, strict=True) if r.call_id]
    outcomes = []
    for i, (call_id, c) in enumerate(granted):
        cost = c.usd * 2 if i == overshoot % len(granted) else c.usd * c.tenths / 10
        outcomes.append(settle(ledger, call_id, cost) if c.tenths else ledger.release(call_id))
    await asyncio.gather(*outcomes)
    largest = max((c.usd for _, c in granted), default=Decimal(0))
    rows = await assert_counters_match_the_ledger(db_pool, tenant)
    assert {r["status"] for r in rows} <= {"settled", "released"}
    for spend in await asyncio.gather(*(ledger.spend(p) for p in set(payers))):
        for s in spend:
            if s.limit_usd is not None:
                assert s.spent_usd <= s.limit_usd + largest


async def test_sixty_concurrent_calls_get_exactly_what_fits(db_pool: DbPool) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    ledger = ledger_with(
        db_pool,
        budget_user_day_usd=Decimal(1),
        budget_tenant_month_usd=Decimal("0.8"),
        budget_thread_usd=Decimal("0.6"),
    )
    p = Payer(tenant_id=tenant, user_id="u", thread_id=f"{tenant}-th", run_id=None)
    reservations = await asyncio.gather(
        *(ledger.reserve(p, estimate(Decimal("0.05")), route=None) for _ in range(60))
    )
    assert sum(r.granted for r in reservations) == 12, "the thread's $0.60 holds 12 calls"
    assert {r.exceeded for r in reservations if not r.granted} == {"thread"}
    await assert_counters_match_the_ledger(db_pool, tenant)


# --------------------------------------------------------------------------- a model


@dataclass
class Model:
    """What the ledger should decide and hold, computed in Python."""

    limits: dict[Scope, Decimal | None]
    calls: list[dict[str, Any]] = field(default_factory=list)

    def total(self, scope: Scope, p: Payer) -> Decimal:
        ident = limited_keys(p, self.limits)[scope]
        return sum(
            (
                c["cost"] if c["state"] == "settled" else c["usd"]
                for c in self.calls
                if c["state"] in ("held", "settled")
                and limited_keys(c["payer"], self.limits).get(scope) == ident
            ),
            Decimal(0),
        )

    def fits(self, p: Payer, usd: Decimal) -> bool:
        return all(
            self.total(scope, p) + usd <= limit
            for scope in limited_keys(p, self.limits)
            if (limit := self.limits[scope]) is not None
        )


async def outlive(pool: DbPool, call_id: str) -> None:
    """Move a reservation's expiry to the past, as if its TTL had run out."""
    async with pool.connection() as conn:
        await conn.execute(
            "UPDATE usage_ledger SET held_until = now() - interval '1 second'"
            " WHERE call_id = %s AND held_until IS NOT NULL",
            (call_id,),
        )


OPS = st.one_of(
    st.tuples(st.just("reserve"), st.integers(0, len(PAYERS) - 1), USD),
    st.tuples(st.just("settle"), st.integers(0, 99), USD.map(lambda d: d * 2)),
    st.tuples(st.just("release"), st.integers(0, 99)),
    st.tuples(st.just("crash"), st.integers(0, 99)),
)


@PROPERTY
@given(
    limits=st.fixed_dictionaries({"user_day": LIMIT, "tenant_month": LIMIT, "thread": LIMIT}),
    ops=st.lists(OPS, max_size=25),
)
async def test_counters_follow_the_ledger_through_any_sequence(
    db_pool: DbPool, limits: dict[Scope, Decimal | None], ops: list[tuple[Any, ...]]
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    update = {
        "budget_user_day_usd": limits["user_day"],
        "budget_tenant_month_usd": limits["tenant_month"],
        "budget_thread_usd": limits["thread"],
    }
    ledger = ledger_with(db_pool, **update)
    model = Model(limits)
    for op in ops:
        if op[0] == "reserve":
            p, usd = payer(tenant, op[1]), op[2]
            expected = model.fits(p, usd)
            r = await ledger.reserve(p, estimate(usd), route=None)
            assert r.granted == expected, (op, model)
            if r.call_id:
                model.calls.append({"id": r.call_id, "payer": p, "usd": usd, "state": "held"})
        elif model.calls:
            c = model.calls[op[1] % len(model.calls)]
            if op[0] == "crash":  # its process died a TTL ago
                await outlive(db_pool, c["id"])
                await ledger.sweep()
                c["state"] = "expired" if c["state"] == "held" else c["state"]
            elif op[0] == "settle":
                await settle(ledger, c["id"], op[2])
                if c["state"] in ("held", "expired"):
                    c["state"], c["cost"] = "settled", op[2]
            else:
                await ledger.release(c["id"])
                c["state"] = "released" if c["state"] in ("held", "expired") else c["state"]
        await assert_counters_match_the_ledger(db_pool, tenant)
    for index in range(len(PAYERS)):
        p = payer(tenant, index)
        for s in await ledger.spend(p):
            if s.scope in limited_keys(p, limits):
                assert s.spent_usd == model.total(s.scope, p)


# --------------------------------------------------------------------------- expiry


async def test_a_crashed_reservation_stops_counting_after_the_ttl(db_pool: DbPool) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    ledger = ledger_with(db_pool, budget_user_day_usd=Decimal(1), budget_reservation_ttl_s=0.5)
    alice = Payer(tenant_id=tenant, user_id="alice", thread_id=None, run_id=None)
    lost = await ledger.reserve(alice, estimate(Decimal("0.8")), route=None)
    assert lost.call_id is not None  # its replica dies: never settled nor released
    refused = await ledger.reserve(alice, estimate(Decimal("0.5")), route=None)
    assert refused.exceeded == "user_day"
    assert [s.spent_usd for s in await ledger.spend(alice) if s.scope == "user_day"] == [
        Decimal("0.8")
    ]

    await asyncio.sleep(0.6)
    (day,) = [s for s in await ledger.spend(alice) if s.scope == "user_day"]
    assert day.spent_usd == 0, "a budget that looks spent sweeps stale reservations first"
    later = await ledger.reserve(alice, estimate(Decimal("0.5")), route=None)
    assert later.call_id is not None
    # The lost call's process comes back after all: its cost counts, its reservation not twice.
    await settle(ledger, lost.call_id, Decimal("0.3"))
    rows = await assert_counters_match_the_ledger(db_pool, tenant)
    by_id = {str(r["call_id"]): r for r in rows}
    assert by_id[lost.call_id]["status"] == "settled"
    assert by_id[lost.call_id]["expired_at"] is not None
    (day,) = [s for s in await ledger.spend(alice) if s.scope == "user_day"]
    assert day.spent_usd == Decimal("0.8")


async def test_the_refusal_path_sweeps_before_it_refuses(db_pool: DbPool) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    ledger = ledger_with(db_pool, budget_thread_usd=Decimal(1), budget_reservation_ttl_s=0.3)
    bob = Payer(tenant_id=tenant, user_id="bob", thread_id=f"{tenant}-th", run_id=None)
    assert (await ledger.reserve(bob, estimate(Decimal(1)), route=None)).granted
    await asyncio.sleep(0.4)
    assert (await ledger.reserve(bob, estimate(Decimal(1)), route=None)).granted
    await assert_counters_match_the_ledger(db_pool, tenant)


# --------------------------------------------------------------------------- statements


class RecordingCursor(AsyncCursor[DictRow]):
    statements: list[str] = []

    async def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
        RecordingCursor.statements.append(str(query))
        return await super().execute(query, *args, **kwargs)


async def test_no_advisory_lock_and_one_statement_per_step(database_url: str) -> None:
    kwargs: dict[str, Any] = {
        "autocommit": True,
        "prepare_threshold": 0,
        "row_factory": dict_row,
        "cursor_factory": RecordingCursor,
    }
    async with AsyncConnectionPool(
        database_url,
        connection_class=AsyncConnection[DictRow],
        min_size=1,
        kwargs=kwargs,
        open=False,
    ) as pool:
        await pool.open(wait=True)
        ledger = PgUsageLedger(pool, Settings())
        p = Payer(tenant_id=f"t-{uuid.uuid4().hex[:8]}", user_id="u", thread_id="th", run_id="r")
        RecordingCursor.statements.clear()
        reservation = await ledger.reserve(p, estimate(Decimal("0.01")), route=None)
        assert reservation.call_id is not None
        await settle(ledger, reservation.call_id, Decimal("0.005"))
    statements = [" ".join(s.split())[:40] for s in RecordingCursor.statements]
    assert len(statements) == 2, statements  # no BEGIN/COMMIT: one autocommit statement each
    assert "budget_reserve(" in RecordingCursor.statements[0]
    assert not any("advisory" in s for s in RecordingCursor.statements)


# --------------------------------------------------------------------------- backfill

BEFORE_COUNTERS = [
    # (user, thread, status, reserved, cost, created_at)
    ("ann", "th-1", "settled", "1", "0.75", "now()"),
    ("ann", "th-1", "reserved", "0.5", None, "now()"),
    ("ann", None, "released", "0.5", "0", "now()"),
    ("bob", "th-2", "settled", "1", "2", "now() - interval '1 day'"),
    ("bob", "th-2", "settled", "1", "4", "date_trunc('month', now()) - interval '1 hour'"),
]


def test_the_migration_backfills_the_current_windows(scratch_database_url: str) -> None:
    url = scratch_database_url
    engine = create_engine(to_sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            command.upgrade(alembic_config(conn), "0005")
            conn.commit()
    finally:
        engine.dispose()
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        for user, thread, status, reserved, cost, at in BEFORE_COUNTERS:
            conn.execute(
                "INSERT INTO usage_ledger (user_id, tenant_id, thread_id, model, status,"
                " estimated_input_tokens, max_output_tokens, reserved_usd, cost_usd, created_at)"
                f" VALUES (%s, 'acme', %s, 'm', %s, 0, 0, %s, %s, {at})",
                (user, thread, status, reserved, cost),
            )
    run_migrations(url)
    with psycopg.connect(url, autocommit=True, row_factory=dict_row) as conn:
        rows = conn.execute("SELECT * FROM usage_ledger").fetchall()
        counters = conn.execute("SELECT * FROM budget_counters").fetchall()
        now = conn.execute("SELECT now() AS now").fetchone()
    assert now is not None
    current = {k[0]: k[3] for k in keys_of("acme", "ann", "th", now["now"])}
    expected = {
        key: sums
        for key, sums in sums_of(rows).items()
        if key[0] == "thread" or key[3] == current[key[0]]
    }
    got = {
        (c["scope"], c["tenant_id"], c["subject"], c["window_start"]): (
            c["spent_usd"],
            c["reserved_usd"],
        )
        for c in counters
    }
    assert got == expected
    assert got["thread", "acme", "th-2", EPOCH] == (Decimal(6), Decimal(0))
    assert got["user_day", "acme", "ann", current["user_day"]] == (Decimal("0.75"), Decimal(0))
    assert all(r["held_until"] is None for r in rows), "the old reservations are not counted"
