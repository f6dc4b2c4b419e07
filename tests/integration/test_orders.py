"""PgOrderStore against real Postgres: balances, approvals, idempotency, concurrency."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from steward.domain.orders import PgOrderStore
from steward.domain.seed import DEMO_ORDERS
from steward.domain.types import Approval, RefundRefused, RefundResult

pytestmark = pytest.mark.integration

THRESHOLD = Decimal("500")


def approval(reviewer: str = "alice@example.com") -> Approval:
    return Approval(
        decision="approve",
        reviewer=reviewer,
        decided_at="2025-06-01T12:00:00+00:00",
        comment="customer is right",
    )


async def refund(
    orders: PgOrderStore,
    order_id: str,
    amount: str,
    *,
    key: str,
    approval: Approval | None = None,
) -> RefundResult:
    return await orders.issue_refund(
        order_id=order_id,
        amount=Decimal(amount),
        reason="damaged in transit",
        idempotency_key=key,
        thread_id="thread-1",
        requested_by="user-1",
        approval=approval,
        approval_threshold=THRESHOLD,
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

    await refund(orders, "LS-10004", "50.10", key="k-view")

    after = await orders.get_order("LS-10004")
    assert after is not None
    assert (after["refunded"], after["refundable"]) == ("50.10", "138.90")
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
    assert row["idempotency_key"] == "k-within"


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


async def test_refund_above_threshold_needs_approval(orders: PgOrderStore) -> None:
    with pytest.raises(RefundRefused) as refused:
        await refund(orders, "LS-10017", "600.00", key="k-big")
    assert refused.value.code == "approval_required"
    assert await orders.list_refunds("LS-10017") == []

    # Same key after a person approved (what a resumed graph run does).
    result = await refund(orders, "LS-10017", "600.00", key="k-big", approval=approval())
    assert result["replayed"] is False
    assert result["approved_by"] == "alice@example.com"
    rows = await orders.list_refunds("LS-10017")
    assert len(rows) == 1
    assert rows[0]["approved_by"] == "alice@example.com"
    assert rows[0]["approval"] == approval()


async def test_refund_at_threshold_needs_no_approval(orders: PgOrderStore) -> None:
    result = await refund(orders, "LS-10017", "500.00", key="k-at-threshold")
    assert result["approved_by"] is None


async def test_approval_without_reviewer_does_not_count(orders: PgOrderStore) -> None:
    with pytest.raises(RefundRefused) as refused:
        await refund(orders, "LS-10017", "600.00", key="k-anon", approval=approval(reviewer=" "))
    assert refused.value.code == "approval_required"


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
