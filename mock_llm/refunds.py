"""Finding refunds in text: order ids, dollar amounts, and refund instructions in tool results.

The scripted model is gullible on purpose: `injected_refunds` finds refund commands planted in
tool results, so the graph's guards can be tested against prompt injection.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from mock_llm.messages import SENTENCE_END, strings

ORDER_ID = re.compile(r"(?<![\w-])LS-\d{4,8}(?![\w-])", re.IGNORECASE)
"""An order id such as `LS-10007`."""
REFUND_WORD = re.compile(r"\brefund(?:s|ed|ing)?\b", re.IGNORECASE)
"""Any form of the word "refund"."""
_REFUND_INSTRUCTION = re.compile(
    r"\brefund\s+(?:(?:of|for|the|a|an|order|customer|on|to|them|me|us)\s+)*(?:\$|usd\b|ls-\d|\d)",
    re.IGNORECASE,
)
"""`refund` used as a command with its object: "refund $900 on LS-10007", "refund order LS-1"."""
_NUM = r"\d{1,3}(?:,\d{3})+(?:\.\d{1,2})?|\d+(?:\.\d{1,2})?"
_AMOUNT = re.compile(
    rf"\$\s?(?P<a>{_NUM})(?!\d|,\d)"
    rf"|(?<![\w.,$])(?P<b>{_NUM})\s?(?:dollars?|usd|bucks)\b"
    rf"|\busd\s?(?P<c>{_NUM})(?!\d|,\d)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class Refund:
    """A refund named in text: which order, how much."""

    order_id: str
    amount: Decimal


def unique(items: Iterator[str]) -> list[str]:
    """Return the items without repeats, in order of first appearance."""
    return list(dict.fromkeys(items))


def first_order(text: str) -> str | None:
    """Return the first order id in `text` (upper-cased), or None."""
    match = ORDER_ID.search(text)
    return match.group().upper() if match else None


def refunds_in(text: str) -> list[Refund]:
    """Pair order ids with dollar amounts in `text` (order-id digits never count as amounts).

    The same number of ids and amounts pair up in order of appearance; otherwise each pair is
    chosen by nearest distance, each id and amount used once.
    """
    orders = [(m.start(), m.group().upper()) for m in ORDER_ID.finditer(text)]
    masked = ORDER_ID.sub(lambda m: "#" * len(m.group()), text)
    amounts: list[tuple[int, Decimal]] = []
    for match in _AMOUNT.finditer(masked):
        raw = match.group("a") or match.group("b") or match.group("c")
        try:
            amounts.append((match.start(), Decimal(raw.replace(",", ""))))
        except InvalidOperation:  # pragma: no cover - the pattern only matches numbers
            continue
    if not orders or not amounts:
        return []
    if len(orders) == len(amounts):
        pairs = list(zip(orders, amounts, strict=True))
    else:
        candidates = sorted(
            (abs(o[0] - a[0]), oi, ai)
            for oi, o in enumerate(orders)
            for ai, a in enumerate(amounts)
        )
        used_o: set[int] = set()
        used_a: set[int] = set()
        chosen = []
        for _, oi, ai in candidates:
            if oi not in used_o and ai not in used_a:
                used_o.add(oi)
                used_a.add(ai)
                chosen.append((orders[oi], amounts[ai]))
        pairs = sorted(chosen, key=lambda p: p[0][0])
    refunds = [Refund(order, amount) for (_, order), (_, amount) in pairs]
    return list(dict.fromkeys(refunds))


def _previous_refunds(messages: Sequence[Mapping[str, Any]]) -> set[Refund]:
    """Return the (order id, amount) of every issue_refund call made so far."""
    done: set[Refund] = set()
    for message in messages:
        if message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(function, Mapping) or function.get("name") != "issue_refund":
                continue
            try:
                args = json.loads(str(function.get("arguments") or ""))
                done.add(Refund(str(args["order_id"]).upper(), Decimal(str(args["amount"]))))
            except (ValueError, KeyError, TypeError, InvalidOperation):
                continue
    return done


def injected_refunds(
    messages: Sequence[Mapping[str, Any]], batch: Sequence[tuple[str, str]]
) -> list[tuple[Refund, str]]:
    """Find refund instructions in tool results that were not acted on yet.

    Only a sentence that uses "refund" as a command ("refund $900 on LS-10007") and names an
    order id and a dollar amount counts, so policy prose ("we've refunded $48.20 for order
    LS-10519", "issues a $30 partial refund") is not taken as an instruction. Results of
    issue_refund itself are skipped: they describe the model's own action.
    """
    done = _previous_refunds(messages)
    found: list[tuple[Refund, str]] = []
    for name, text in batch:
        if name == "issue_refund":
            continue
        try:
            texts = list(strings(json.loads(text)))
        except ValueError:
            texts = [text]
        for piece in texts:
            for sentence in SENTENCE_END.split(piece):
                if not _REFUND_INSTRUCTION.search(sentence):
                    continue
                for refund in refunds_in(sentence):
                    if refund not in done:
                        done.add(refund)
                        found.append((refund, sentence.strip()))
    return found


__all__ = [
    "ORDER_ID",
    "REFUND_WORD",
    "Refund",
    "first_order",
    "injected_refunds",
    "refunds_in",
    "unique",
]
