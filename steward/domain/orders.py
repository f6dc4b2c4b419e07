"""`OrderStore` on Postgres: orders and idempotent refunds.

Money is integer cents in the database and `Decimal` (two places) in Python.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from steward.domain.types import Approval, OrderView, RefundRefused, RefundResult

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import DictRow

    from steward.db.pool import DbPool

logger = logging.getLogger(__name__)

CENT = Decimal("0.01")

_GET_ORDER = """
    SELECT o.order_id, o.status, o.currency, o.total_cents, o.items, o.placed_at,
           COALESCE((SELECT sum(r.amount_cents) FROM refunds r WHERE r.order_id = o.order_id),
                    0)::bigint AS refunded_cents
    FROM orders o
    WHERE o.order_id = %s
"""
_REFUND_BY_KEY = """
    SELECT refund_id, order_id, amount_cents, currency, approved_by
    FROM refunds
    WHERE idempotency_key = %s
"""
_LOCK_ORDER = "SELECT order_id, currency, total_cents FROM orders WHERE order_id = %s FOR UPDATE"
_REFUNDED_CENTS = (
    "SELECT COALESCE(sum(amount_cents), 0)::bigint AS refunded FROM refunds WHERE order_id = %s"
)
_INSERT_REFUND = """
    INSERT INTO refunds (order_id, amount_cents, currency, reason, idempotency_key, thread_id,
                         requested_by, approved_by, approval)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING refund_id, order_id, amount_cents, currency, approved_by
"""
_LIST_REFUNDS = """
    SELECT refund_id, order_id, amount_cents, currency, reason, idempotency_key, thread_id,
           requested_by, approved_by, approval, created_at
    FROM refunds
    WHERE %(order_id)s::text IS NULL OR order_id = %(order_id)s::text
    ORDER BY created_at, refund_id
"""


def cents_to_decimal(cents: int) -> Decimal:
    """Return integer cents as a two-place `Decimal` (`12990` -> `Decimal("129.90")`)."""
    return Decimal(cents).scaleb(-2)


def format_money(cents: int) -> str:
    """Return integer cents as a plain decimal string (`12990` -> `"129.90"`)."""
    return str(cents_to_decimal(cents))


def to_cents(amount: Decimal | int | str) -> int:
    """Convert a positive amount with at most two decimal places to integer cents.

    Raises:
        RefundRefused: `invalid_amount` for zero, negative, non-finite or sub-cent amounts.
    """
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
        if not value.is_finite():
            raise InvalidOperation
        quantized = value.quantize(CENT)
    except (InvalidOperation, ValueError, TypeError):
        raise RefundRefused("invalid_amount", "The amount is not a valid number.") from None
    if quantized != value:
        raise RefundRefused("invalid_amount", "Amounts can have at most two decimal places.")
    if quantized <= 0:
        raise RefundRefused("invalid_amount", "The refund amount must be greater than zero.")
    return int(quantized.scaleb(2))


def _reviewer(approval: Approval | None) -> str | None:
    """Return who approved, or None when `approval` does not release the action."""
    if not approval or approval.get("decision") not in ("approve", "edit"):
        return None
    reviewer = approval.get("reviewer")
    return reviewer if isinstance(reviewer, str) and reviewer.strip() else None


def _result(row: DictRow, *, replayed: bool) -> RefundResult:
    return RefundResult(
        refund_id=str(row["refund_id"]),
        order_id=row["order_id"],
        amount=format_money(row["amount_cents"]),
        currency=row["currency"],
        status="executed",
        replayed=replayed,
        approved_by=row["approved_by"],
    )


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PgOrderStore:
    """Orders and refunds in Postgres (implements `steward.domain.types.OrderStore`)."""

    def __init__(self, pool: DbPool) -> None:
        self._pool = pool

    async def get_order(self, order_id: str) -> OrderView | None:
        """Return the order with its refunded and refundable amounts, or None."""
        async with self._pool.connection() as conn:
            row = await (await conn.execute(_GET_ORDER, (order_id,))).fetchone()
        if row is None:
            return None
        total: int = row["total_cents"]
        refunded: int = row["refunded_cents"]
        placed_at: datetime = row["placed_at"]
        return OrderView(
            order_id=row["order_id"],
            status=row["status"],
            currency=row["currency"],
            total=format_money(total),
            refunded=format_money(refunded),
            refundable=format_money(max(total - refunded, 0)),
            placed_at=placed_at.astimezone(UTC).isoformat(),
            items=row["items"],
        )

    async def issue_refund(
        self,
        *,
        order_id: str,
        amount: Decimal,
        reason: str,
        idempotency_key: str,
        thread_id: str,
        requested_by: str | None,
        approval: Approval | None,
        approval_threshold: Decimal,
    ) -> RefundResult:
        """Refund once per idempotency key; raise RefundRefused when a rule forbids it.

        Runs in one transaction holding the order row lock (`FOR UPDATE`), so concurrent
        refunds of one order are serialized and cannot together exceed its total. Rules:
        `order_not_found`, `invalid_amount` (<= 0 or more than two decimals),
        `exceeds_refundable` (total minus existing refunds), `approval_required` (amount above
        `approval_threshold` without an approval naming a reviewer). A repeated key returns
        the first refund with `replayed=True`, even when its arguments differ (logged).
        """
        async with self._pool.connection() as conn, conn.transaction():
            existing = await self._by_key(conn, idempotency_key)
            if existing is not None:
                return self._replay(existing, order_id, amount)

            order = await (await conn.execute(_LOCK_ORDER, (order_id,))).fetchone()
            if order is None:
                raise RefundRefused("order_not_found", f"Order {_short(order_id)} was not found.")
            # A twin with the same key may have committed while we waited for the row lock.
            existing = await self._by_key(conn, idempotency_key)
            if existing is not None:
                return self._replay(existing, order_id, amount)

            cents = to_cents(amount)
            currency: str = order["currency"]
            refunded_row = await (await conn.execute(_REFUNDED_CENTS, (order_id,))).fetchone()
            refunded: int = refunded_row["refunded"] if refunded_row else 0
            refundable = order["total_cents"] - refunded
            if cents > refundable:
                raise RefundRefused(
                    "exceeds_refundable",
                    f"Order {_short(order_id)} has {format_money(max(refundable, 0))} {currency} "
                    f"left to refund; {format_money(cents)} {currency} was requested.",
                )
            approved_by = _reviewer(approval)
            if cents_to_decimal(cents) > approval_threshold and approved_by is None:
                raise RefundRefused(
                    "approval_required",
                    f"Refunds above {approval_threshold} {currency} need a person's approval.",
                )
            row = await (
                await conn.execute(
                    _INSERT_REFUND,
                    (
                        order_id,
                        cents,
                        currency,
                        reason,
                        idempotency_key,
                        thread_id,
                        requested_by,
                        approved_by,
                        Jsonb(approval) if approval is not None else None,
                    ),
                )
            ).fetchone()
            if row is None:
                # A concurrent twin (same key, possibly another order) inserted first.
                existing = await self._by_key(conn, idempotency_key)
                if existing is None:  # pragma: no cover - the conflicting row must exist
                    raise RuntimeError("refund idempotency conflict without a row")
                return self._replay(existing, order_id, amount)

        logger.info(
            "refund %s executed: order=%s amount=%s %s approved_by=%s",
            row["refund_id"],
            order_id,
            format_money(cents),
            currency,
            approved_by,
        )
        return _result(row, replayed=False)

    async def list_refunds(self, order_id: str | None = None) -> list[dict[str, Any]]:
        """Return refunds (all, or of one order) oldest first, amounts as decimal strings."""
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(_LIST_REFUNDS, {"order_id": order_id})).fetchall()
        return [
            {
                "refund_id": str(r["refund_id"]),
                "order_id": r["order_id"],
                "amount": format_money(r["amount_cents"]),
                "currency": r["currency"],
                "reason": r["reason"],
                "idempotency_key": r["idempotency_key"],
                "thread_id": r["thread_id"],
                "requested_by": r["requested_by"],
                "approved_by": r["approved_by"],
                "approval": r["approval"],
                "created_at": r["created_at"].astimezone(UTC).isoformat(),
            }
            for r in rows
        ]

    @staticmethod
    async def _by_key(conn: AsyncConnection[DictRow], key: str) -> DictRow | None:
        return await (await conn.execute(_REFUND_BY_KEY, (key,))).fetchone()

    @staticmethod
    def _replay(row: DictRow, order_id: str, amount: Decimal) -> RefundResult:
        if row["order_id"] != order_id or cents_to_decimal(row["amount_cents"]) != amount:
            logger.warning(
                "refund idempotency key reused with different arguments: refund=%s "
                "(order=%s amount=%s), request (order=%s amount=%s); returning the original",
                row["refund_id"],
                row["order_id"],
                format_money(row["amount_cents"]),
                _short(order_id),
                amount,
            )
        return _result(row, replayed=True)


__all__ = ["CENT", "PgOrderStore", "cents_to_decimal", "format_money", "to_cents"]
