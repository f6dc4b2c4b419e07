"""PgOrderStore against real Postgres: balances, approvals, idempotency, concurrency."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import psycopg
import pytest

from core.db.pool import DbPool
from core.domain.orders import PgOrderStore
from core.domain.seed import DEMO_ORDERS
from core.domain.types import RefundRefused, RefundRequest, RefundResult, action_hash

pytestmark = pytest.mark.integration


async def refund(
    orders: PgOrderStore,
    order_id: str,
    amount: str,
    *,
    key: str,
    thread_id: str = "thread-1",
    call_id: str | None = None,
) -> RefundResult:
    """What run_tools asks the store: `key` stands for the user request (message id)."""
    args = {"order_id": order_id, "amount": amount, "reason": "damaged in transit"}
    return await orders.issue_refund(
        RefundRequest(
            order_id=order_id,
            amount=Decimal(amount),
            reason="damaged in transit",
            thread_id=thread_id,
            tool_call_id=call_id or f"call-{key}",
            request_id=key,
            requested_by="user-1",
            args_hash=action_hash("issue_refund", args),
        )
    )


async def test_demo_orders_are_seeded(orders: PgOrderStore) -> None:
    assert len(DEMO_ORDERS) == 24
    for demo in DEMO_ORDERS:
        view = await orders.get_order(demo.order_id)
        assert view is not None
        assert Decimal(view["total"]) == demo.total
    totals = [o.total for o in DEMO_ORDERS]
    assert min(totals) == Decimal("19.99")
    assert max(totals) == Decimal("2499.00")


async def test_get_order_reports_refunded_and_refundable(orders: PgOrderStore) -> None:
    before = await orders.get_order("LS-10004")
    assert before is not None
    assert (before["total"], before["refunded"], before["refundable"]) == (
        "189.00",
        "0.00",
        "189.00",
    )
    assert before["status"] == "placed"
    assert before["items"][0]["sku"] == "JK-RAIN-UL"
    assert before["placed_at"].endswith("+00:00")

    await refund(orders, "LS-10008", "50.10", key="k-view")  # shipped: captured

    after = await orders.get_order("LS-10008")
    assert after is not None
    assert (after["total"], after["refunded"], after["refundable"]) == ("238.00", "50.10", "187.90")
    assert await orders.get_order("LS-99999") is None


async def test_refund_within_balance_executes_and_records_row(orders: PgOrderStore) -> None:
    result = await refund(orders, "LS-10002", "20.50", key="k-within")

    assert result["status"] == "executed"
    assert result["replayed"] is False
    assert (result["order_id"], result["amount"], result["currency"]) == (
        "LS-10002",
        "20.50",
        "USD",
    )
    assert result["approved_by"] is None
    rows = await orders.list_refunds("LS-10002")
    assert len(rows) == 1
    row = rows[0]
    assert row["refund_id"] == result["refund_id"]
    assert row["amount"] == "20.50"
    assert row["reason"] == "damaged in transit"
    assert (row["thread_id"], row["requested_by"]) == ("thread-1", "user-1")
    assert row["idempotency_key"] == "thread-1:k-within:LS-10002"
    assert row["request_id"] == "k-within" and row["tool_call_id"] == "call-k-within"


async def test_refund_over_refundable_balance_is_refused(orders: PgOrderStore) -> None:
    with pytest.raises(RefundRefused) as first:
        await refund(orders, "LS-10002", "69.01", key="k-over-1")
    assert first.value.code == "exceeds_refundable"

    await refund(orders, "LS-10002", "50.00", key="k-over-2")
    with pytest.raises(RefundRefused) as second:
        await refund(orders, "LS-10002", "19.01", key="k-over-3")
    assert second.value.code == "exceeds_refundable"
    assert "19.00" in second.value.message

    # The exact remaining balance is still allowed.
    await refund(orders, "LS-10002", "19.00", key="k-over-4")
    assert [r["amount"] for r in await orders.list_refunds("LS-10002")] == ["50.00", "19.00"]
    view = await orders.get_order("LS-10002")
    assert view is not None
    assert view["refundable"] == "0.00"


async def test_refund_above_threshold_needs_a_decided_approval(orders: PgOrderStore) -> None:
    with pytest.raises(RefundRefused) as refused:
        await refund(orders, "LS-10017", "600.00", key="k-big")
    assert refused.value.code == "approval_required"
    assert "approval queue" in refused.value.message
    assert await orders.list_refunds("LS-10017") == []


async def test_refund_at_threshold_needs_no_approval(orders: PgOrderStore) -> None:
    result = await refund(orders, "LS-10017", "500.00", key="k-at-threshold")
    assert result["approved_by"] is None


async def test_the_threshold_lives_in_the_database(orders: PgOrderStore) -> None:
    assert await orders.approval_threshold_cents() == 50_000
    await orders.set_approval_threshold(Decimal("100"))
    try:
        with pytest.raises(RefundRefused) as refused:
            await refund(orders, "LS-10017", "150.00", key="k-lowered")
        assert refused.value.code == "approval_required"
    finally:
        await orders.set_approval_threshold(Decimal("500"))


@pytest.mark.parametrize("order_id", ["LS-10006", "LS-10004"])
async def test_uncaptured_orders_are_never_refunded(orders: PgOrderStore, order_id: str) -> None:
    """LS-10006 is cancelled, LS-10004 placed (not shipped): no payment was captured."""
    with pytest.raises(RefundRefused) as refused:
        await refund(orders, order_id, "10.00", key=f"k-uncaptured-{order_id}")
    assert refused.value.code == "not_captured"
    assert await orders.list_refunds(order_id) == []


async def test_postgres_refuses_a_forged_refund_above_the_threshold(
    orders: PgOrderStore, db_pool: DbPool
) -> None:
    """Whatever code inserts it: no approval, or one that names no such action, is refused."""
    forged = (
        "INSERT INTO refunds (order_id, amount_cents, currency, reason, idempotency_key,"
        " thread_id, requested_by, approved_by, approval_id, tool_call_id)"
        " VALUES ('LS-10017', 60000, 'USD', 'x', %s, 'thread-x', 'mallory', 'mallory', %s, 'c')"
    )
    nobody = "00000000-0000-0000-0000-0000000000aa"
    for key, approval_id in (("forged-1", None), ("forged-2", nobody)):
        async with db_pool.connection() as conn:
            with pytest.raises(psycopg.errors.CheckViolation):
                await conn.execute(forged, (key, approval_id))
    async with db_pool.connection() as conn:
        with pytest.raises(psycopg.errors.CheckViolation):
            await conn.execute(
                "INSERT INTO refunds (order_id, amount_cents, currency, reason, idempotency_key,"
                " thread_id) VALUES ('LS-10006', 100, 'USD', 'x', 'forged-3', 'thread-x')"
            )
    assert await orders.list_refunds("LS-10017") == []


async def test_same_idempotency_key_twice_is_replayed(orders: PgOrderStore) -> None:
    first = await refund(orders, "LS-10011", "100.00", key="k-twice")
    second = await refund(orders, "LS-10011", "100.00", key="k-twice")

    assert first["replayed"] is False
    assert second["replayed"] is True
    assert second["refund_id"] == first["refund_id"]
    assert second["amount"] == "100.00"
    assert len(await orders.list_refunds("LS-10011")) == 1
    view = await orders.get_order("LS-10011")
    assert view is not None
    assert view["refunded"] == "100.00"


async def test_concurrent_calls_with_one_key_create_one_refund(orders: PgOrderStore) -> None:
    # 150 is more than half of the 238.00 total: a twin that missed the replay would be
    # refused as exceeds_refundable instead of being replayed.
    results = await asyncio.gather(
        *(refund(orders, "LS-10008", "150.00", key="k-storm") for _ in range(20))
    )

    assert len({r["refund_id"] for r in results}) == 1
    assert sorted(r["replayed"] for r in results) == [False] + [True] * 19
    rows = await orders.list_refunds("LS-10008")
    assert len(rows) == 1
    assert rows[0]["amount"] == "150.00"


@pytest.mark.parametrize("callers", [2, 10])
async def test_concurrent_keys_cannot_exceed_the_balance(
    orders: PgOrderStore, callers: int
) -> None:
    # 200.00 twice is more than the 329.00 total: only one may succeed.
    outcomes = await asyncio.gather(
        *(refund(orders, "LS-10012", "200.00", key=f"k-race-{i}") for i in range(callers)),
        return_exceptions=True,
    )

    executed = [o for o in outcomes if isinstance(o, dict)]
    refused = [o for o in outcomes if isinstance(o, RefundRefused)]
    assert len(executed) == 1, outcomes
    assert len(refused) == callers - 1, outcomes
    assert {r.code for r in refused} == {"exceeds_refundable"}
    assert len(await orders.list_refunds("LS-10012")) == 1


async def test_unknown_order_is_refused(orders: PgOrderStore) -> None:
    with pytest.raises(RefundRefused) as refused:
        await refund(orders, "LS-99999", "10.00", key="k-unknown")
    assert refused.value.code == "order_not_found"
    assert await orders.list_refunds("LS-99999") == []


@pytest.mark.parametrize("amount", ["10.005", "0.001", "0", "0.00", "-5.00", "NaN", "Infinity"])
async def test_invalid_amount_is_refused(orders: PgOrderStore, amount: str) -> None:
    with pytest.raises(RefundRefused) as refused:
        await refund(orders, "LS-10019", amount, key=f"k-invalid-{amount}")
    assert refused.value.code == "invalid_amount"
    assert await orders.list_refunds("LS-10019") == []


async def test_whole_and_one_decimal_amounts_are_accepted(orders: PgOrderStore) -> None:
    assert (await refund(orders, "LS-10019", "10", key="k-whole"))["amount"] == "10.00"
    assert (await refund(orders, "LS-10019", "10.5", key="k-one"))["amount"] == "10.50"
    assert (await refund(orders, "LS-10019", "1.200", key="k-zeros"))["amount"] == "1.20"
