"""Composing the final answer: from tool results, from search hits or from the prompt's context.

Each function returns the answer text and the ids of the chunks it cites; rendering it as the
`{"answer": ..., "sources": [...]}` JSON object is the policy's job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from mock_llm.messages import SENTENCE_END, Chunk, contact_of, context_chunks
from mock_llm.replies import dumps

NO_POLICY = "I don't know: I don't have a policy that covers this, so I can't answer it."
"""How the answer starts when no policy text applies (a well-behaved model: no guessing)."""
NO_CONTACT = "a member of our support team"
"""Who can help when the prompt names no `<contact>`."""
_FAILED_STATUSES = frozenset({"rejected", "denied", "failed", "error"})
_PENDING_STATUSES = frozenset({"pending_approval", "pending", "held", "awaiting_approval"})


def no_policy(messages: Sequence[Mapping[str, Any]]) -> str:
    """The honest answer when no policy text applies, naming the prompt's `<contact>`."""
    return f"{NO_POLICY} A person can help you: {contact_of(messages) or NO_CONTACT}."


def answer_from_context(messages: Sequence[Mapping[str, Any]]) -> tuple[str, list[str]]:
    """Answer from the `<context>` chunks of the system prompt, if any."""
    chunks = context_chunks(messages)
    if chunks:
        return answer_from_chunks(chunks)
    return no_policy(messages), []


def answer_from_chunks(chunks: Sequence[Chunk]) -> tuple[str, list[str]]:
    """Answer with the lead of the first chunk, citing the first two."""
    first = chunks[0]
    prefix = f"According to our {first.title}:" if first.title else "According to our policy:"
    return f"{prefix} {_lead(first.text)}", [c.id for c in chunks[:2]]


def _lead(text: str, *, min_chars: int = 80, max_chars: int = 400) -> str:
    """Return the first sentence of `text`, or the first two when the first is short."""
    sentences = [s.strip() for s in SENTENCE_END.split(text.strip()) if s.strip()]
    if not sentences:
        return ""
    lead = sentences[0]
    if len(lead) < min_chars and len(sentences) > 1:
        lead = f"{lead} {sentences[1]}"
    return lead if len(lead) <= max_chars else lead[: max_chars - 1].rstrip() + "…"


def answer_from_tools(
    batch: Sequence[tuple[str, str]], messages: Sequence[Mapping[str, Any]] = ()
) -> tuple[str, list[str]]:
    """Compose the final answer from one batch of tool results (`messages`: the request)."""
    sentences: list[str] = []
    sources: list[str] = []
    for name, text in batch:
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = None
        error = _error_detail(text, parsed)
        if error is not None:
            sentences.append(_failure_sentence(name, error, parsed))
        elif name == "issue_refund" or (isinstance(parsed, Mapping) and "refund_id" in parsed):
            sentences.append(_refund_sentence(parsed))
        elif name == "get_order" or (isinstance(parsed, Mapping) and "refundable" in parsed):
            sentences.append(_order_sentence(parsed))
        elif name == "search_policies" or isinstance(parsed, list):
            answer, ids = _answer_from_search(parsed, messages)
            sentences.append(answer)
            sources.extend(i for i in ids if i not in sources)
        else:
            sentences.append(f"The {name or 'tool'} call returned: {_clip(text)}")
    if not sentences:
        return "I couldn't find anything to answer with.", []
    return " ".join(sentences), sources


def _error_detail(text: str, parsed: Any) -> str | None:
    """Return why a tool failed, or None when the result is not an error."""
    stripped = text.strip()
    if stripped.lower().startswith("error:"):
        return stripped[len("error:") :].strip() or "unknown error"
    if parsed is None and stripped in {"", "null"}:
        return "nothing was found"
    if not isinstance(parsed, Mapping):
        return None
    error = parsed.get("error")
    if error:
        if isinstance(error, Mapping):
            return str(error.get("message") or error.get("detail") or dumps(error))
        return str(error)
    status = str(parsed.get("status") or "").lower()
    if status in _FAILED_STATUSES:
        for key in ("detail", "message", "reason", "comment"):
            if parsed.get(key):
                return str(parsed[key])
        return f"the request was {status}"
    return None


def _failure_sentence(name: str, detail: str, parsed: Any) -> str:
    detail = _clip(detail).rstrip(".")
    if name == "issue_refund":
        return f"The refund was not issued: {detail}."
    if name == "get_order":
        return f"I couldn't look up the order: {detail}."
    if name == "search_policies":
        return f"I couldn't search our policies: {detail}."
    if isinstance(parsed, Mapping) and parsed.get("order_id"):
        return f"The action on order {parsed['order_id']} was not done: {detail}."
    return f"The {name or 'tool'} call was not done: {detail}."


def _refund_sentence(parsed: Any) -> str:
    if not isinstance(parsed, Mapping):
        return "The refund request returned an unexpected result."
    order = parsed.get("order_id", "?")
    amount = _money(parsed.get("amount"), parsed.get("currency"))
    status = str(parsed.get("status") or "").lower()
    if status == "executed":
        return f"I've refunded {amount} on order {order} (refund {parsed.get('refund_id', '?')})."
    if status in _PENDING_STATUSES:
        return f"The refund of {amount} on order {order} is waiting for a manager's approval."
    return f"The refund of {amount} on order {order} has status {status or 'unknown'}."


def _order_sentence(parsed: Any) -> str:
    if not isinstance(parsed, Mapping):
        return "I couldn't read the order details."
    currency = parsed.get("currency")
    return (
        f"Order {parsed.get('order_id', '?')} is {parsed.get('status', 'unknown')}: "
        f"the total was {_money(parsed.get('total'), currency)} and "
        f"{_money(parsed.get('refundable'), currency)} can still be refunded."
    )


def _answer_from_search(
    parsed: Any, messages: Sequence[Mapping[str, Any]]
) -> tuple[str, list[str]]:
    chunks = [
        Chunk(str(c.get("id", "")), str(c.get("title", "")), str(c.get("text", "")))
        for c in (parsed if isinstance(parsed, list) else [])
        if isinstance(c, Mapping)
    ]
    if not chunks:
        return no_policy(messages), []
    return answer_from_chunks(chunks)


def _money(value: Any, currency: Any) -> str:
    if value is None:
        return "an unknown amount"
    if isinstance(value, float | int):
        value = Decimal(str(value))
    shown = str(value)
    if currency in (None, "", "USD"):
        return f"${shown}"
    return f"{shown} {currency}"


def _clip(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


__all__ = [
    "NO_CONTACT",
    "NO_POLICY",
    "answer_from_chunks",
    "answer_from_context",
    "answer_from_tools",
    "no_policy",
]
