"""The scripted, deterministic "model" behind the mock provider and the offline demo model.

`reply(request)` reads an OpenAI chat-completions request body and decides, without any I/O or
randomness, what a (deliberately gullible) support model would answer: tool calls for refunds,
order look-ups and policy searches, or one JSON object `{"answer": ..., "sources": [...]}`.
When neither the prompt's `<context>` nor a search holds a policy excerpt it answers honestly
(it does not know, and names the prompt's `<contact>`), as a well-behaved model would.
It obeys refund instructions found in tool results on purpose, so the graph's guards can be
tested against prompt injection. Test markers in the user text (`[[mock:...]]`) force
misbehaviour: invalid tool-call JSON, unknown tools, non-JSON or badly cited answers.

This module plans the turn; reading the request (`messages`), finding refunds (`refunds`),
composing answers (`answers`) and counting tokens (`usage`) live beside it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mock_llm.answers import answer_from_chunks, answer_from_context, answer_from_tools, no_policy
from mock_llm.messages import (
    REPAIR_PREFIX,
    context_chunks,
    effective_user,
    latest_batch_after,
    read_markers,
    text_of,
    tool_batch,
)
from mock_llm.refunds import (
    ORDER_ID,
    REFUND_WORD,
    Refund,
    first_order,
    injected_refunds,
    refunds_in,
    unique,
)
from mock_llm.replies import MockReply, MockToolCall, dumps
from mock_llm.usage import prompt_tokens, text_tokens, tool_call_tokens

INVENTED_SOURCE = "made-up-policy#9"
"""The chunk id `[[mock:invent-source]]` adds to an otherwise valid answer."""
MAX_REASON_CHARS = 200
MAX_QUERY_CHARS = 500


@dataclass(slots=True)
class _Decision:
    """Internal: text, or tool calls as (name, arguments JSON string)."""

    text: str | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)


def reply(request: Mapping[str, Any]) -> MockReply:
    """Decide the scripted model's reply to an OpenAI chat-completions request body.

    Args:
        request: The request body (`messages`, optional `tools`, `tool_choice`, `model`, ...).

    Returns:
        Text content (finish reason `stop`) or tool calls (finish reason `tool_calls`), with
        usage counted by `core.tokens.count_chat_tokens` on o200k_base.
    """
    messages = [m for m in request.get("messages") or () if isinstance(m, Mapping)]
    tools = [t for t in request.get("tools") or () if isinstance(t, Mapping)]
    offered = _offered_tools(tools, request.get("tool_choice"))
    decision = _decide(messages, offered)

    seed = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str)
    calls = tuple(
        MockToolCall(id=_call_id(seed, i, name, args), name=name, arguments=args)
        for i, (name, args) in enumerate(decision.calls)
    )
    prompt = prompt_tokens(messages, tools)
    if calls:
        return MockReply(None, calls, prompt, tool_call_tokens(decision.calls))
    text = decision.text or ""
    return MockReply(text, (), prompt, text_tokens(text))


def _call_id(seed: str, index: int, name: str, arguments: str) -> str:
    digest = hashlib.sha256(f"{seed}\x00{index}\x00{name}\x00{arguments}".encode()).hexdigest()
    return f"call_{digest[:24]}"


def _offered_tools(tools: Sequence[Mapping[str, Any]], tool_choice: Any) -> frozenset[str]:
    if tool_choice == "none":
        return frozenset()
    names: set[str] = set()
    for tool in tools:
        function = tool.get("function")
        if isinstance(function, Mapping) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return frozenset(names)


def _decide(messages: list[Mapping[str, Any]], offered: frozenset[str]) -> _Decision:
    user_index, user_text = effective_user(messages)
    markers, clean_text = read_markers(user_text)
    repaired = any(
        m.get("role") in {"user", "system"} and text_of(m.get("content")).startswith(REPAIR_PREFIX)
        for m in messages
    )
    last_role = messages[-1].get("role") if messages else None

    if last_role == "tool":
        batch = tool_batch(messages)
        injected = injected_refunds(messages, batch) if "issue_refund" in offered else []
        if injected:
            return _Decision(calls=[_refund_call(r, reason) for r, reason in injected])
        answer, sources = answer_from_tools(batch, messages)
        return _final(answer, sources, markers, repaired)

    last_text = text_of(messages[-1].get("content")) if messages else ""
    if last_text.startswith(REPAIR_PREFIX):
        # A repair turn: answer again from what is already known, never act twice.
        batch = latest_batch_after(messages, user_index)
        if batch:
            answer, sources = answer_from_tools(batch, messages)
        else:
            answer, sources = answer_from_context(messages)
        return _final(answer, sources, markers, repaired)

    if "invalid-json-args" in markers:
        order = first_order(clean_text) or "LS-10001"
        return _Decision(calls=[("issue_refund", f'{{"order_id": "{order}", "amount": ]')])
    if markers.get("tool"):
        return _Decision(calls=[(markers["tool"], "{}")])

    reason = clean_text.strip()[:MAX_REASON_CHARS]
    orders = unique(m.group().upper() for m in ORDER_ID.finditer(clean_text))
    if orders and REFUND_WORD.search(clean_text):
        refunds = refunds_in(clean_text)
        if refunds:
            if "issue_refund" not in offered:
                return _final("I can't issue refunds from here.", [], markers, repaired)
            return _Decision(calls=[_refund_call(r, reason) for r in refunds])
    if orders:
        if "get_order" not in offered:
            return _final("I can't look up orders from here.", [], markers, repaired)
        return _Decision(calls=[("get_order", dumps({"order_id": o})) for o in orders])

    if not clean_text.strip():
        return _final(
            "I didn't receive a question. What can I help you with?", [], markers, repaired
        )
    chunks = context_chunks(messages)
    if chunks:
        answer, sources = answer_from_chunks(chunks)
        return _final(answer, sources, markers, repaired)
    if "search_policies" in offered:
        query = clean_text.strip()[:MAX_QUERY_CHARS]
        return _Decision(calls=[("search_policies", dumps({"query": query}))])
    return _final(no_policy(messages), [], markers, repaired)


def _final(
    answer: str, sources: list[str], markers: Mapping[str, str], repaired: bool
) -> _Decision:
    """Render the final answer, applying the output markers."""
    if "bad-output" in markers or ("bad-output-once" in markers and not repaired):
        prose = f"Here is what I found. {answer} Let me know if there is anything else."
        return _Decision(text=prose.replace("{", "(").replace("}", ")"))
    if "invent-source" in markers:
        sources = [*sources, INVENTED_SOURCE]
    return _Decision(text=json.dumps({"answer": answer, "sources": sources}, ensure_ascii=False))


def _refund_call(refund: Refund, reason: str) -> tuple[str, str]:
    integral = refund.amount == refund.amount.to_integral_value()
    amount: int | float = int(refund.amount) if integral else float(refund.amount)
    return "issue_refund", dumps(
        {"order_id": refund.order_id, "amount": amount, "reason": reason[:MAX_REASON_CHARS]}
    )


__all__ = ["INVENTED_SOURCE", "MAX_QUERY_CHARS", "MAX_REASON_CHARS", "reply"]
