"""Splitting a refund does not avoid a person (migration 0014), against real Postgres.

Approval Matrix note 1: amounts are per request. Within 24 hours of a rejected refund of an
order, or once the order's refunds of the last 24 hours and a new one exceed the threshold,
that refund needs a released approval: through the store, and through any other code that
inserts into `refunds` (the trigger).
"""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg.types.json import Jsonb

from core.db.pool import DbPool
from core.domain.orders import PgOrderStore
from core.domain.types import RefundRefused, RefundRequest, RefundResult, action_hash

pytestmark = pytest.mark.integration

ORDER = "LS-10017"
"""Delivered, $2,499.00: every split below fits its balance."""


async def refund(
    orders: PgOrderStore, amount: str, *, key: str, order_id: str = ORDER
) -> RefundResult:
    """What run_tools asks the store for one user request (`key`)."""
    args = {"order_id": order_id, "amount": amount, "reason": "damaged in transit"}
    return await orders.issue_refund(
        RefundRequest(
            order_id=order_id,
            amount=Decimal(amount),
            reason="damaged in transit",
            thread_id=f"thread-{key}",
            tool_call_id=f"call-{key}",
            request_id=key,
            requested_by="user-1",
            args_hash=action_hash("issue_refund", args),
        )
    )


async def reject(pool: DbPool, amount: str, *, order_id: str = ORDER) -> None:
    """Record a refund request a reviewer rejected, as `bind_resume` records it."""
    approval_id = uuid.uuid4()
    args = {"order_id": order_id, "amount": amount, "reason": "damaged in transit"}
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO approvals (approval_id, thread_id, tenant_id, requester_id,"
            " interrupt_id, action, status, decided_by, decider_role, decider_tenant,"
            " decided_at, comment) VALUES (%s, %s, 'acme', 'pat', 'i-1', '{}', 'pending',"
            " NULL, NULL, NULL, NULL, NULL)",
            (approval_id, uuid.uuid4()),
        )
        await conn.execute(
            "INSERT INTO approval_actions (approval_id, position, tool_call_id, name, args,"
            " args_hash) VALUES (%s, 0, 'call-big', 'issue_refund', %s, %s)",
            (approval_id, Jsonb(args), action_hash("issue_refund", args)),
        )
        await conn.execute(
            "UPDATE approval_actions SET decision = 'reject' WHERE approval_id = %s",
            (approval_id,),
        )
        await conn.execute(
            "UPDATE approvals SET status = 'rejected', decided_by = 'mia',"
            " decider_role = 'approver', decider_tenant = 'acme', decided_at = now(),"
            " comment = 'needs inspection' WHERE approval_id = %s",
            (approval_id,),
        )


async def forge(pool: DbPool, cents: int, key: str, *, order_id: str = ORDER) -> None:
    """Insert a refund the way a buggy or hostile code path would: no store, no approval."""
    async with pool.connection() as conn:
        await conn.execute(
            "INSERT INTO refunds (order_id, amount_cents, currency, reason, idempotency_key,"
            " thread_id, requested_by) VALUES (%s, %s, 'USD', 'x', %s, 'thread-x', 'mallory')",
            (order_id, cents, key),
        )


async def test_a_split_of_a_rejected_refund_needs_a_person(
    orders: PgOrderStore, db_pool: DbPool
) -> None:
    await reject(db_pool, "900.00")

    reason = await orders.split_reason(ORDER, "450.00")
    assert reason is not None
    assert "splits a 900.00 USD refund of LS-10017 that a reviewer rejected" in reason
    with pytest.raises(RefundRefused) as refused:
        await refund(orders, "450.00", key="k-half")
    assert refused.value.code == "approval_required"
    assert "rejected" in refused.value.message
    # Any amount, on any thread, by anyone: the order had a rejection in the window.
    with pytest.raises(RefundRefused):
        await refund(orders, "1.00", key="k-crumb")
    assert await orders.list_refunds(ORDER) == []
    # Another order is not affected.
    assert await orders.split_reason("LS-10013", "450.00") is None
    assert (await refund(orders, "450.00", key="k-other", order_id="LS-10013"))["amount"]


async def test_postgres_refuses_a_split_inserted_directly(
    orders: PgOrderStore, db_pool: DbPool
) -> None:
    """Bypassing the graph and the store: the trigger applies the same rule."""
    await reject(db_pool, "900.00")
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        await forge(db_pool, 45_000, "forged-split")
    assert "reviewer rejected" in str(refused.value)
    assert await orders.list_refunds(ORDER) == []


async def test_postgres_refuses_refunds_that_add_up_above_the_threshold(
    orders: PgOrderStore, db_pool: DbPool
) -> None:
    await forge(db_pool, 30_000, "forged-a")
    with pytest.raises(psycopg.errors.CheckViolation) as refused:
        await forge(db_pool, 30_000, "forged-b")
    assert "together 600.00 USD, above the 500.00 USD approval threshold" in str(refused.value)
    await forge(db_pool, 20_000, "forged-c")  # 500.00 in total: at the threshold, allowed
    assert [r["amount"] for r in await orders.list_refunds(ORDER)] == ["300.00", "200.00"]
    # Raising an admitted refund is a split too; lowering one is not.
    async with db_pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute(
                "UPDATE refunds SET amount_cents = 30000 WHERE idempotency_key = 'forged-c'"
            )
        await conn.execute(
            "UPDATE refunds SET amount_cents = 10000 WHERE idempotency_key = 'forged-c'"
        )


async def test_refunds_older_than_the_window_do_not_count(
    orders: PgOrderStore, db_pool: DbPool
) -> None:
    await reject(db_pool, "900.00")
    await forge(db_pool, 40_000, "forged-old", order_id="LS-10013")
    async with db_pool.connection() as conn:
        await conn.execute(
            "UPDATE refund_rejections SET rejected_at = now() - interval '25 hours'"
            " WHERE order_id = %s",
            (ORDER,),
        )
        await conn.execute("ALTER TABLE refunds DISABLE TRIGGER refunds_require_authority")
        try:
            await conn.execute(
                "UPDATE refunds SET created_at = now() - interval '25 hours'"
                " WHERE idempotency_key = 'forged-old'"
            )
        finally:
            await conn.execute("ALTER TABLE refunds ENABLE TRIGGER refunds_require_authority")
    assert await orders.split_reason(ORDER, "450.00") is None
    assert await orders.split_reason("LS-10013", "450.00") is None
    assert (await refund(orders, "450.00", key="k-next-day"))["status"] == "executed"


async def test_a_rejection_recorded_before_the_split_rule_counts(
    orders: PgOrderStore, db_pool: DbPool
) -> None:
    """The rejection ledger is kept by a trigger on approval_actions, whatever writes it."""
    await reject(db_pool, "900.00")
    async with db_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT amount_cents FROM refund_rejections WHERE order_id = %s", (ORDER,)
        )
        assert [r["amount_cents"] for r in await cur.fetchall()] == [90_000]


async def test_two_concurrent_splits_through_the_store_do_not_both_pass(
    orders: PgOrderStore,
) -> None:
    outcomes = await asyncio.gather(
        refund(orders, "300.00", key="k-race-a"),
        refund(orders, "300.00", key="k-race-b"),
        return_exceptions=True,
    )
    executed = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, RefundRefused)]
    assert len(executed) == 1 and len(refused) == 1, outcomes
    assert refused[0].code == "approval_required"
    assert "together 600.00 USD" in refused[0].message
    assert [r["amount"] for r in await orders.list_refunds(ORDER)] == ["300.00"]


async def test_two_concurrent_direct_inserts_do_not_both_pass(
    orders: PgOrderStore, db_pool: DbPool
) -> None:
    """Without the store's lock: the trigger locks the order row itself."""
    async with db_pool.connection() as first:
        async with first.transaction():
            await first.execute(
                "INSERT INTO refunds (order_id, amount_cents, currency, reason,"
                " idempotency_key, thread_id) VALUES (%s, 30000, 'USD', 'x', 'race-1', 'x')",
                (ORDER,),
            )
            blocked = asyncio.create_task(forge(db_pool, 30_000, "race-2"))
            await asyncio.sleep(0.5)
            assert not blocked.done(), "the second insert waits for the order row lock"
        with pytest.raises(psycopg.errors.CheckViolation):
            await blocked
    assert [r["amount"] for r in await orders.list_refunds(ORDER)] == ["300.00"]


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    amounts=st.lists(st.integers(1, 500), min_size=2, max_size=6),
    concurrent=st.booleans(),
)
async def test_refunds_without_a_person_never_add_up_above_the_threshold(
    orders: PgOrderStore, db_pool: DbPool, amounts: list[int], concurrent: bool
) -> None:
    """Any split, sequential or concurrent: what executes without approval is <= $500."""
    async with db_pool.connection() as conn:
        await conn.execute("DELETE FROM refunds WHERE order_id = %s", (ORDER,))
    calls = [refund(orders, f"{a}.00", key=f"k-{uuid.uuid4().hex}") for a in amounts]
    if concurrent:
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    else:
        outcomes = []
        for call in calls:
            try:
                outcomes.append(await call)
            except RefundRefused as exc:
                outcomes.append(exc)
    assert all(isinstance(o, dict | RefundRefused) for o in outcomes), outcomes
    assert {o.code for o in outcomes if isinstance(o, RefundRefused)} <= {"approval_required"}
    executed = sum(Decimal(r["amount"]) for r in await orders.list_refunds(ORDER))
    assert executed <= Decimal(500)
    if sum(amounts) <= 500:
        assert executed == sum(amounts), "refunds that stay under the threshold still execute"
