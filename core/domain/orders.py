"""`OrderStore` on Postgres: orders and idempotent refunds.

Money is integer cents in the database and `Decimal` (two places) in Python.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

import psycopg

from core.domain.types import OrderView, RefundRefused, RefundRequest, RefundResult

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import DictRow

    from core.db.pool import DbPool

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
    WHERE idempotency_key = %s OR (thread_id = %s AND tool_call_id = %s)
    ORDER BY created_at
    LIMIT 1
"""
_LOCK_ORDER = (
    "SELECT order_id, status, currency, total_cents FROM orders WHERE order_id = %s FOR UPDATE"
)
_REFUNDED_CENTS = (
    "SELECT COALESCE(sum(amount_cents), 0)::bigint AS refunded FROM refunds WHERE order_id = %s"
)
_THRESHOLD = "SELECT approval_threshold_cents FROM refund_policy"
_SPLIT_REASON = "SELECT refund_split_reason(%s, %s) AS reason"
"""Why a refund under the threshold still needs a person (migration 0014), or NULL."""
_SET_THRESHOLD = """
    INSERT INTO refund_policy (singleton, approval_threshold_cents) VALUES (true, %s)
    ON CONFLICT (singleton) DO UPDATE
        SET approval_threshold_cents = EXCLUDED.approval_threshold_cents, updated_at = now()
        WHERE refund_policy.approval_threshold_cents <> EXCLUDED.approval_threshold_cents
"""
_RELEASED_ACTION = """
    SELECT p.approval_id, x.released_order_id, x.released_amount_cents, x.released_args_hash
    FROM approvals p
    JOIN approval_actions x ON x.approval_id = p.approval_id
    WHERE p.thread_id::text = %s AND x.tool_call_id = %s
      AND p.status IN ('approved', 'edited') AND x.decision IN ('approve', 'edit')
      AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.approval_id = p.approval_id
                                               AND r.tool_call_id = x.tool_call_id)
    ORDER BY (x.released_order_id = %s AND x.released_amount_cents = %s
              AND x.released_args_hash = %s) DESC, p.decided_at DESC
    LIMIT 1
    FOR SHARE OF p
"""
_INSERT_REFUND = """
    INSERT INTO refunds (order_id, amount_cents, currency, reason, idempotency_key, thread_id,
                         requested_by, approval_id, tool_call_id, request_id, run_id, args_hash)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING refund_id, order_id, amount_cents, currency, approved_by
"""
CAPTURED_STATUSES = frozenset({"shipped", "delivered"})
"""Orders whose payment was captured: the only ones a refund can apply to."""
_LIST_REFUNDS = """
    SELECT refund_id, order_id, amount_cents, currency, reason, idempotency_key, thread_id,
           requested_by, approved_by, approval, created_at, approval_id, tool_call_id,
           request_id, run_id, decided_by, decided_at, comment
    FROM refunds
    WHERE (%(order_id)s::text IS NULL OR order_id = %(order_id)s::text)
      AND (%(tenant_id)s::text IS NULL OR EXISTS (
            SELECT 1 FROM threads t
            WHERE t.thread_id::text = refunds.thread_id AND t.tenant_id = %(tenant_id)s::text))
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


def not_captured_reason(order_id: str, status: str) -> str:
    """Why an order in `status` cannot be refunded, pointing to what the policy offers."""
    if status == "cancelled":
        return (
            f"Order {_short(order_id)} is cancelled: its payment was never captured (or was "
            "already released), so there is nothing to refund."
        )
    return (
        f"Order {_short(order_id)} has not shipped yet ({status}): no payment was captured, "
        "so it cannot be refunded; cancel the order instead."
    )


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


def _db_reason(exc: psycopg.errors.CheckViolation) -> str:
    primary = exc.diag.message_primary or "the database refused the refund"
    return primary[:1].upper() + primary[1:] + "."


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PgOrderStore:
    """Orders and refunds in Postgres (implements `core.domain.types.OrderStore`)."""

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

    async def approval_threshold_cents(self) -> int | None:
        """The threshold the database enforces (None: every refund needs a person)."""
        async with self._pool.connection() as conn:
            row = await (await conn.execute(_THRESHOLD)).fetchone()
        return int(row["approval_threshold_cents"]) if row else None

    async def split_reason(self, order_id: str, amount: Decimal | str) -> str | None:
        """Why this refund needs a person although it is under the threshold, or None.

        The database's split rule (migration 0014): a person rejected a refund of this order
        in the last 24 hours, or the order's refunds of the last 24 hours plus this one exceed
        the threshold. The store and the trigger apply the same rule when the refund executes.
        """
        try:
            cents = to_cents(amount)
        except RefundRefused:
            return None  # the store refuses the amount itself
        async with self._pool.connection() as conn:
            return await self._split(conn, order_id, cents)

    async def set_approval_threshold(self, threshold: Decimal) -> None:
        """Write the service's threshold into the database (done once at start)."""
        async with self._pool.connection() as conn:
            await conn.execute(_SET_THRESHOLD, (to_cents(threshold) if threshold > 0 else 0,))

    async def issue_refund(self, request: RefundRequest) -> RefundResult:
        """Refund once per (thread, user request, order); raise RefundRefused when refused.

        One transaction holds the order row lock (`FOR UPDATE`), so concurrent refunds of one
        order are serialized and cannot together exceed its total. Rules: `order_not_found`,
        `not_captured` (cancelled or not shipped), `invalid_amount`, `exceeds_refundable`,
        and above the threshold stored in `refund_policy`, or under it when the split rule
        says why (`split_reason`): `approval_required` (no decided approval of this thread's
        tool call) or `approval_mismatch` (the decision released another order, amount or
        arguments). The requester and the decider are read from the
        approval row, never from the caller. A trigger checks the same rules again, so no
        other code path can insert a refund they refuse. A repeated key returns the first
        refund with `replayed=True`.
        """
        order_id, key = request.order_id, request.idempotency_key
        async with self._pool.connection() as conn, conn.transaction():
            existing = await self._by_key(conn, request)
            if existing is not None:
                return self._replay(existing, request)

            order = await (await conn.execute(_LOCK_ORDER, (order_id,))).fetchone()
            if order is None:
                raise RefundRefused("order_not_found", f"Order {_short(order_id)} was not found.")
            # A twin with the same key may have committed while we waited for the row lock.
            existing = await self._by_key(conn, request)
            if existing is not None:
                return self._replay(existing, request)
            if order["status"] not in CAPTURED_STATUSES:
                raise RefundRefused("not_captured", not_captured_reason(order_id, order["status"]))

            cents = to_cents(request.amount)
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
            threshold_row = await (await conn.execute(_THRESHOLD)).fetchone()
            threshold = threshold_row["approval_threshold_cents"] if threshold_row else None
            approval_id = None
            split = None
            if threshold is not None and cents <= threshold:
                # Under the order row lock: a concurrent refund of this order is counted.
                split = await self._split(conn, order_id, cents)
            if threshold is None or cents > threshold or split is not None:
                approval_id = await self._released_approval(
                    conn, request, cents, currency, threshold, split
                )
            try:
                async with conn.transaction():
                    cur = await conn.execute(
                        _INSERT_REFUND,
                        (
                            order_id,
                            cents,
                            currency,
                            request.reason,
                            key,
                            request.thread_id,
                            request.requested_by,
                            approval_id,
                            request.tool_call_id,
                            request.request_id,
                            request.run_id,
                            request.args_hash,
                        ),
                    )
                    row = await cur.fetchone()
            except psycopg.errors.CheckViolation as exc:
                raise RefundRefused("refused_by_database", _db_reason(exc)) from exc
            except psycopg.errors.UniqueViolation as exc:
                # A twin used this tool call or approval action first (another key).
                raise RefundRefused(
                    "already_executed", "This refund was already executed once."
                ) from exc
            if row is None:
                # A concurrent twin (same key, possibly another order) inserted first.
                existing = await self._by_key(conn, request)
                if existing is None:  # pragma: no cover - the conflicting row must exist
                    raise RuntimeError("refund idempotency conflict without a row")
                return self._replay(existing, request)

        logger.info(
            "refund %s executed: order=%s amount=%s %s approval=%s approved_by=%s",
            row["refund_id"],
            order_id,
            format_money(cents),
            currency,
            approval_id,
            row["approved_by"],
        )
        return _result(row, replayed=False)

    @staticmethod
    async def _released_approval(
        conn: AsyncConnection[DictRow],
        request: RefundRequest,
        cents: int,
        currency: str,
        threshold: int | None,
        split: str | None = None,
    ) -> Any:
        """The approval that released exactly this call, or RefundRefused."""
        above = (
            f"Refunds above {format_money(threshold)} {currency}"
            if threshold is not None
            else "Refunds"
        )
        row = await (
            await conn.execute(
                _RELEASED_ACTION,
                (
                    request.thread_id,
                    request.tool_call_id,
                    request.order_id,
                    cents,
                    request.args_hash,
                ),
            )
        ).fetchone()
        if row is None:
            if split is not None:
                raise RefundRefused(
                    "approval_required",
                    "This refund needs a person's decision recorded in the approval queue: "
                    f"it {split}.",
                )
            raise RefundRefused(
                "approval_required",
                f"{above} need a person's decision recorded in the approval queue.",
            )
        if (
            row["released_order_id"] != request.order_id
            or row["released_amount_cents"] != cents
            or row["released_args_hash"] != request.args_hash
        ):
            raise RefundRefused(
                "approval_mismatch",
                "The approval on record released a different refund than this one.",
            )
        return row["approval_id"]

    async def list_refunds(
        self, order_id: str | None = None, *, tenant_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Return refunds (all, or of one order; of one tenant's threads) oldest first."""
        params = {"order_id": order_id, "tenant_id": tenant_id}
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(_LIST_REFUNDS, params)).fetchall()
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
                "approval_id": str(r["approval_id"]) if r["approval_id"] else None,
                "tool_call_id": r["tool_call_id"],
                "request_id": r["request_id"],
                "run_id": str(r["run_id"]) if r["run_id"] else None,
                "decided_by": r["decided_by"],
                "decided_at": (
                    r["decided_at"].astimezone(UTC).isoformat() if r["decided_at"] else None
                ),
                "comment": r["comment"],
            }
            for r in rows
        ]

    @staticmethod
    async def _split(conn: AsyncConnection[DictRow], order_id: str, cents: int) -> str | None:
        row = await (await conn.execute(_SPLIT_REASON, (order_id, cents))).fetchone()
        return row["reason"] if row else None

    @staticmethod
    async def _by_key(conn: AsyncConnection[DictRow], request: RefundRequest) -> DictRow | None:
        """The refund this request (or this very tool call) already made, if any."""
        params = (request.idempotency_key, request.thread_id, request.tool_call_id)
        return await (await conn.execute(_REFUND_BY_KEY, params)).fetchone()

    @staticmethod
    def _replay(row: DictRow, request: RefundRequest) -> RefundResult:
        """The first refund of this request; a different refund under its key is refused."""
        if (
            row["order_id"] != request.order_id
            or cents_to_decimal(row["amount_cents"]) != request.amount
        ):
            logger.warning(
                "refund key reused with different arguments: refund=%s (order=%s amount=%s), "
                "request (order=%s amount=%s); refused",
                row["refund_id"],
                row["order_id"],
                format_money(row["amount_cents"]),
                _short(request.order_id),
                request.amount,
            )
            raise RefundRefused(
                "already_refunded_for_request",
                f"This request already refunded {format_money(row['amount_cents'])} "
                f"{row['currency']} on order {_short(row['order_id'])} (refund "
                f"{row['refund_id']}); one refund per order per request.",
            )
        return _result(row, replayed=True)


__all__ = [
    "CAPTURED_STATUSES",
    "CENT",
    "PgOrderStore",
    "cents_to_decimal",
    "format_money",
    "not_captured_reason",
    "to_cents",
]
