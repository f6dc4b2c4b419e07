"""Where a tool argument came from: facts the risk rules use against injected instructions.

A refund whose order id or amount the user never wrote came from somewhere else: a retrieved
document, a tool result, or the model's own invention. The guard reads the user's messages of
the whole thread (not the validator's repair prompts) and the refunds already executed in it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from langchain_core.messages import AnyMessage, HumanMessage, ToolMessage

from core.domain.types import ORDER_ID, order_ids

_NUMBER = re.compile(r"(?<![\w.])\$?\s?(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d{1,2}))?(?![\w])")
REPAIR_AUTHOR = "validator"
"""`name` of the HumanMessage the validate node adds to ask for a repair (not the user)."""


def amounts(text: str) -> set[Decimal]:
    """Every number written in `text` (order-id digits excluded), as a Decimal."""
    masked = ORDER_ID.sub(" ", text)
    found: set[Decimal] = set()
    for match in _NUMBER.finditer(masked):
        whole, cents = match.group(1).replace(",", ""), match.group(2)
        try:
            found.add(Decimal(f"{whole}.{cents}" if cents else whole))
        except InvalidOperation:  # pragma: no cover - the pattern only matches digits
            continue
    return found


def user_texts(messages: Sequence[AnyMessage]) -> list[str]:
    """The text of every message the user wrote in the thread (repair prompts excluded)."""
    return [m.text for m in messages if isinstance(m, HumanMessage) and m.name != REPAIR_AUTHOR]


def executed_refunds(messages: Iterable[AnyMessage]) -> dict[str, Decimal]:
    """Amount refunded per order by successful `issue_refund` results in the thread."""
    seen: set[str] = set()
    totals: dict[str, Decimal] = {}
    for message in messages:
        if not (
            isinstance(message, ToolMessage)
            and message.name == "issue_refund"
            and message.status == "success"
        ):
            continue
        try:
            result = json.loads(str(message.content))
            refund_id, order, amount = (
                str(result["refund_id"]),
                str(result["order_id"]),
                Decimal(str(result["amount"])),
            )
        except (ValueError, KeyError, TypeError, InvalidOperation):
            continue
        if refund_id in seen:
            continue
        seen.add(refund_id)
        totals[order.upper()] = totals.get(order.upper(), Decimal(0)) + amount
    return totals


@dataclass(kw_only=True)
class Provenance:
    """What the user wrote and what was already refunded, for one model turn's calls."""

    orders: set[str]
    amounts: set[Decimal]
    refunded: dict[str, Decimal]
    pending: dict[str, Decimal] = field(default_factory=dict)
    """Refunds allowed or held earlier in the same batch of calls, per order."""

    @classmethod
    def of(cls, messages: Sequence[AnyMessage]) -> Provenance:
        """Collect the facts from the conversation."""
        texts = user_texts(messages)
        return cls(
            orders=set().union(*(order_ids(t) for t in texts)),
            amounts=set().union(*(amounts(t) for t in texts)),
            refunded=executed_refunds(messages),
        )

    def refund_facts(self, order_id: str, amount: Decimal) -> dict[str, object]:
        """Derived facts of one refund call (before it is counted as pending)."""
        order = order_id.upper()
        earlier = self.refunded.get(order, Decimal(0)) + self.pending.get(order, Decimal(0))
        facts: dict[str, object] = {
            "order_id_from_user": order in self.orders,
            "amount_from_user": amount in self.amounts,
        }
        if earlier > 0:  # only a refund that adds to earlier ones is a possible split
            facts["order_refund_total"] = earlier + amount
        return facts

    def count(self, order_id: str, amount: Decimal) -> None:
        """Remember a refund of this batch that was not denied."""
        order = order_id.upper()
        self.pending[order] = self.pending.get(order, Decimal(0)) + amount


__all__ = ["ORDER_ID", "Provenance", "amounts", "executed_refunds", "order_ids", "user_texts"]
