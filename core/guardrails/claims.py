"""Claims in an answer that a refund happened, checked against the refunds that did.

A sentence claims a refund when it says one was issued, processed or completed ("I've refunded
$120 on LS-10007", "your refund has been processed") and does not hedge it (not, pending,
waiting, once, if, requires approval...). A claim is backed when a refund of the named order
(or, when it names none, any refund) was executed in this turn or earlier in the thread.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from core.domain.types import order_ids

_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_CLAIM = re.compile(
    r"\b(?:i|we)(?:'ve|\s+have)?\s+(?:just\s+|now\s+|already\s+|successfully\s+)?"
    r"(?:refunded|issued\s+(?:a|the|your)\s+(?:\w+\s+)?refund|processed\s+(?:a|the|your)\s+"
    r"(?:\w+\s+)?refund|credited|reimbursed)\b"
    r"|\b(?:your|the|a|this)\s+(?:\w+\s+){0,2}refund\b[^.!?]{0,60}?\b(?:has\s+been|have\s+been|"
    r"was|were|is\s+now|got)\s+(?:successfully\s+|fully\s+)?(?:issued|processed|completed|sent|"
    r"credited|approved|executed|refunded|paid)"
    r"|\b(?:has|have)\s+been\s+(?:fully\s+|partially\s+)?refunded\b"
    r"|\brefund\s+(?:is|was)\s+on\s+(?:its|the)\s+way\b",
    re.IGNORECASE,
)
_HEDGE = re.compile(
    r"\b(?:not|no|never|cannot|can't|couldn't|unable|pending|waiting|awaiting|once|if|until|"
    r"would|will\s+be|requires?|needs?|needed|held|hold|rejected|denied|failed|before|"
    r"approval\s+is\s+required)\b|n't\b",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class RefundClaim:
    """A sentence (by index) that claims a refund, and the orders it names."""

    sentence: int
    orders: frozenset[str]


def refund_claims(answer: str) -> list[RefundClaim]:
    """Find the unhedged refund claims of an answer."""
    claims: list[RefundClaim] = []
    for i, sentence in enumerate(s for s in _SENTENCE.split(answer) if s.strip()):
        if _CLAIM.search(sentence) and not _HEDGE.search(sentence):
            claims.append(RefundClaim(i, frozenset(order_ids(sentence))))
    return claims


def unbacked_claims(answer: str, refunded_orders: Collection[str]) -> list[RefundClaim]:
    """Claims that no executed refund backs.

    Args:
        answer: the final answer.
        refunded_orders: order ids (upper-case) with an executed refund in this turn or thread.
    """
    refunded = {o.upper() for o in refunded_orders}
    return [
        claim
        for claim in refund_claims(answer)
        if (claim.orders and not claim.orders <= refunded) or (not claim.orders and not refunded)
    ]


__all__ = ["RefundClaim", "refund_claims", "unbacked_claims"]
