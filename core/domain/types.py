"""Value types and the store protocol for orders and refunds."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, Protocol, TypedDict

from core.errors import StewardError

ORDER_ID = re.compile(r"(?<![\w-])LS-\d{5}(?![\w-])", re.IGNORECASE)
"""How an order id is written (`LS-` and five digits), anywhere in a text."""


def order_ids(text: str) -> set[str]:
    """Order ids written in `text`, upper-cased."""
    return {m.group().upper() for m in ORDER_ID.finditer(text)}


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


def action_hash(name: str, args: dict[str, Any]) -> str:
    """The hash that names one action exactly: tool name and canonical JSON arguments.

    The approval queue stores it for what a decision released; a refund must carry the same.
    """
    canonical = json.dumps(
        {"name": name, "args": args},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, kw_only=True, slots=True)
class RefundRequest:
    """One refund a run asks the store to execute, with where it comes from.

    Nothing here can release a refund above the threshold: the store looks up the decided
    approval (thread, tool call) in the database, and Postgres checks it again.
    """

    order_id: str
    amount: Decimal
    reason: str
    thread_id: str
    tool_call_id: str
    request_id: str
    """Id of the user message that asked for it: one refund per order per user request."""
    requested_by: str | None
    run_id: str | None = None
    args_hash: str = ""
    """`action_hash("issue_refund", <canonical args>)`."""

    @property
    def idempotency_key(self) -> str:
        """One refund per (thread, user request, order): re-runs and re-sends replay it."""
        return f"{self.thread_id}:{self.request_id}:{self.order_id}"


class Approval(TypedDict):
    """What the graph carries of a person's decision (informational: never an authority)."""

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


class RefundRefused(StewardError):
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

    async def split_reason(self, order_id: str, amount: Decimal | str) -> str | None:
        """Why a refund under the threshold still needs a person (a split), or None.

        Read from the database (the authority): a person rejected a refund of this order in
        the last 24 hours, or the order's refunds of that window plus this one exceed the
        threshold. Phrased to follow "it", e.g. "splits a 900.00 USD refund of LS-10017 ...".
        """
        ...

    async def issue_refund(self, request: RefundRequest) -> RefundResult:
        """Refund once per (thread, request, order); raise RefundRefused when a rule forbids it.

        Rules, checked inside one transaction holding the order row lock:
        unknown order -> `order_not_found`; cancelled or not shipped -> `not_captured`;
        amount <= 0 -> `invalid_amount`; above the refundable balance -> `exceeds_refundable`;
        above the database's approval threshold, or under it when `split_reason` gives a
        reason, without a released approval of exactly this call -> `approval_required` /
        `approval_mismatch`.
        A repeated key returns the first result with `replayed=True` (no second row).
        """
        ...
