"""What the inbox's templates show, computed from approval rows: pure functions, no I/O.

The rows come from `server.approvals.ApprovalStore` (the API's store); nothing here decides
anything, it only reads the held action and the recorded decision for display.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from server.approvals import ApprovalRow

STATUS_LABELS = {
    "pending": "Pending",
    "approved": "Approved",
    "edited": "Approved with edits",
    "rejected": "Rejected",
    "expired": "Expired",
}
"""How each approval status reads on the page."""


def money(value: Any) -> str:
    """An amount with two decimals (`700` -> `700.00`); anything else as it is written."""
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return f"{number:.2f}" if number.is_finite() else str(value)


def actions_of(row: ApprovalRow) -> list[dict[str, Any]]:
    """The held actions of an approval (`{"name", "args", "description"}` each)."""
    requests = (row["action"] or {}).get("action_requests") or []
    return [a for a in requests if isinstance(a, dict)]


def editable_refund(row: ApprovalRow) -> dict[str, Any] | None:
    """The arguments of the approval's one `issue_refund`, if that is what it holds.

    An edit decides a single action (the API's rule), so only then does the page offer one.
    """
    actions = actions_of(row)
    if len(actions) == 1 and actions[0].get("name") == "issue_refund":
        args = actions[0].get("args")
        return args if isinstance(args, dict) else {}
    return None


def requested_amount(row: ApprovalRow) -> str | None:
    """The amount the held refund asks for (the first refund's), as written in its arguments."""
    for action in actions_of(row):
        amount = (action.get("args") or {}).get("amount")
        if action.get("name") == "issue_refund" and amount is not None:
            return money(amount)
    return None


def decided_amount(row: ApprovalRow) -> str | None:
    """The amount the decision released: the edited one for an edit, else the requested one.

    None for a rejection or an expiry (nothing was released).
    """
    if row["status"] == "edited":
        for decision in (row["decision"] or {}).get("decisions") or []:
            if isinstance(decision, dict) and decision.get("type") == "edit":
                args = (decision.get("edited_action") or {}).get("args") or {}
                if args.get("amount") is not None:
                    return money(args["amount"])
    if row["status"] in ("approved", "edited"):
        return requested_amount(row)
    return None


def order_ids(row: ApprovalRow) -> list[str]:
    """The orders the held actions name, in order, without repeats."""
    seen: list[str] = []
    for action in actions_of(row):
        order_id = (action.get("args") or {}).get("order_id")
        if isinstance(order_id, str) and order_id not in seen:
            seen.append(order_id)
    return seen


def age(created_at: datetime, now: datetime | None = None) -> str:
    """How long ago, in the largest whole unit: `just now`, `5 min`, `3 h`, `2 d`."""
    seconds = int(((now or datetime.now(UTC)) - created_at).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86_400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86_400} d"


def when(moment: datetime | None) -> str:
    """A timestamp as the page shows it: UTC, to the second."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One line of the queue: an approval as the list shows it."""

    approval_id: str
    status: str
    status_label: str
    requester: str
    action: str
    orders: str
    amount: str
    """Pending: the amount asked; decided: the amount released (`-` for none)."""
    requested: str
    age: str
    created: str
    decided_by: str
    decider_role: str
    decided: str
    comment: str


def queue_item(row: ApprovalRow, now: datetime | None = None) -> QueueItem:
    """The list's view of one approval."""
    amount = decided_amount(row) if row["status"] != "pending" else requested_amount(row)
    return QueueItem(
        approval_id=str(row["approval_id"]),
        status=row["status"],
        status_label=STATUS_LABELS.get(row["status"], row["status"]),
        requester=row["requester_id"],
        action=", ".join(str(a.get("name")) for a in actions_of(row)) or "-",
        orders=", ".join(order_ids(row)) or "-",
        amount=amount or "-",
        requested=requested_amount(row) or "-",
        age=age(row["created_at"], now),
        created=when(row["created_at"]),
        decided_by=row["decided_by"] or "",
        decider_role=row["decider_role"] or "",
        decided=when(row["decided_at"]),
        comment=row["comment"] or "",
    )


def message_text(message: dict[str, Any]) -> str:
    """The text of a conversation message (text content blocks joined)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(block.get("text", "")) if isinstance(block, dict) else str(block)
            for block in content
        ]
        return "\n".join(p for p in parts if p)
    return "" if content is None else str(content)


def tool_calls_text(message: dict[str, Any]) -> list[str]:
    """Each tool call of a message as `name(key=value, ...)`."""
    out = []
    for call in message.get("tool_calls") or []:
        if isinstance(call, dict):
            args = call.get("args") or {}
            shown = ", ".join(f"{k}={v}" for k, v in args.items()) if isinstance(args, dict) else ""
            out.append(f"{call.get('name')}({shown})")
    return out


__all__ = [
    "STATUS_LABELS",
    "QueueItem",
    "actions_of",
    "age",
    "decided_amount",
    "editable_refund",
    "message_text",
    "money",
    "order_ids",
    "queue_item",
    "requested_amount",
    "tool_calls_text",
    "when",
]
