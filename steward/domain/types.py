"""Value types and the store protocol for orders and refunds."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal, Protocol, TypedDict


class OrderView(TypedDict):
    """What `get_order` returns to the model (no payment details)."""

    order_id: str
    status: str
    currency: str
    total: str
    """Decimal as a string, e.g. `"129.90"`."""
    refunded: str
    refundable: str
    placed_at: str
    items: list[dict[str, object]]


class Approval(TypedDict):
    """A recorded human decision that releases a high-risk action."""

    decision: Literal["approve", "edit"]
    reviewer: str
    decided_at: str
    comment: str | None


class RefundResult(TypedDict):
    """Outcome of `issue_refund`; `replayed` is True when the idempotency key already existed."""

    refund_id: str
    order_id: str
    amount: str
    currency: str
    status: Literal["executed"]
    replayed: bool
    approved_by: str | None


class RefundRefused(Exception):
    """The refund was refused by a business rule; the message is safe to show the model."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class OrderStore(Protocol):
    """Orders and refunds in the database; every method is async and safe to retry."""

    async def get_order(self, order_id: str) -> OrderView | None:
        """Return the order or None when it does not exist."""
        ...

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

        Rules, checked inside one transaction holding the order row lock:
        unknown order -> `order_not_found`; amount <= 0 -> `invalid_amount`;
        amount above the refundable balance -> `exceeds_refundable`;
        amount above `approval_threshold` without `approval` -> `approval_required`.
        A repeated key returns the first result with `replayed=True` (no second row).
        """
        ...
