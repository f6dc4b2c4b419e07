"""The scripted, deterministic "model" behind the mock provider and the offline demo model.

`reply(request)` reads an OpenAI chat-completions request body and decides, without any I/O or
randomness, what a (deliberately gullible) support model would answer: tool calls for refunds,
order look-ups and policy searches, or one JSON object `{"answer": ..., "sources": [...]}`.
It obeys refund instructions found in tool results on purpose, so the graph's guards can be
tested against prompt injection. Test markers in the user text (`[[mock:...]]`) force
misbehaviour: invalid tool-call JSON, unknown tools, non-JSON or badly cited answers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from core.tokens import count_chat_tokens, count_text_tokens, get_encoding

REPAIR_PREFIX = "Your last reply was not a valid final answer"
"""How the graph's repair message starts (`graph.prompts.REPAIR_PROMPT`)."""
INVENTED_SOURCE = "made-up-policy#9"
"""The chunk id `[[mock:invent-source]]` adds to an otherwise valid answer."""
MAX_REASON_CHARS = 200
MAX_QUERY_CHARS = 500

_MARKER = re.compile(r"\[\[mock:([a-z-]+)(?:=([^\]\s]+))?\]\]", re.IGNORECASE)
_ORDER_ID = re.compile(r"(?<![\w-])LS-\d{4,8}(?![\w-])", re.IGNORECASE)
_REFUND_WORD = re.compile(r"\brefund(?:s|ed|ing)?\b", re.IGNORECASE)
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
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
_CONTEXT_BLOCK = re.compile(r"<context>(.*?)</context>", re.DOTALL)
_CHUNK_LINE = re.compile(r"^\[([^\]\s]+)\]\s+\((.*?)\)(?:\s+(.*))?$")
_FAILED_STATUSES = frozenset({"rejected", "denied", "failed", "error"})
_PENDING_STATUSES = frozenset({"pending_approval", "pending", "held", "awaiting_approval"})


@dataclass(frozen=True, slots=True)
class MockToolCall:
    """One tool call; `arguments` is the JSON string the model emitted (it may be invalid)."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> dict[str, Any]:
        """Return the call as it appears in an OpenAI assistant message."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class MockReply:
    """What the scripted model answers: text content or tool calls, plus token usage."""

    content: str | None
    tool_calls: tuple[MockToolCall, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def finish_reason(self) -> Literal["stop", "tool_calls"]:
        """`tool_calls` when the reply calls tools, else `stop`."""
        return "tool_calls" if self.tool_calls else "stop"

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def usage(self) -> dict[str, Any]:
        """Return the OpenAI `usage` object."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    def message(self) -> dict[str, Any]:
        """Return the OpenAI assistant message (`choices[0].message`)."""
        out: dict[str, Any] = {"role": "assistant", "content": self.content, "refusal": None}
        if self.tool_calls:
            out["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        return out

    def with_malformed_arguments(self) -> MockReply:
        """Return a copy whose tool-call arguments are invalid JSON (see `malform_arguments`)."""
        calls = tuple(
            replace(call, arguments=malform_arguments(call.arguments)) for call in self.tool_calls
        )
        return replace(self, tool_calls=calls)


def malform_arguments(arguments: str) -> str:
    """Corrupt a JSON arguments string so that no JSON parser accepts it.

    The object's closing brace becomes a mismatched `]`, which both `json.loads` and
    langchain-core's `parse_partial_json` (used on streamed tool calls) reject, so the call
    lands in `AIMessage.invalid_tool_calls` whether or not the client streams.
    """
    stripped = arguments.rstrip()
    if stripped.endswith("}"):
        return stripped[:-1] + "]"
    return "{" + stripped + "]"


@dataclass(slots=True)
class _Decision:
    """Internal: text, or tool calls as (name, arguments JSON string)."""

    text: str | None = None
    calls: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Chunk:
    id: str
    title: str
    text: str


@dataclass(frozen=True, slots=True)
class _Refund:
    order_id: str
    amount: Decimal


# --------------------------------------------------------------------------- entry point


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
    encoding = get_encoding("o200k_base")
    prompt_tokens = count_chat_tokens(messages, tools or None, encoding)
    if calls:
        completion = sum(
            count_text_tokens(c.name, encoding) + count_text_tokens(c.arguments, encoding)
            for c in calls
        )
        return MockReply(None, calls, prompt_tokens, completion)
    text = decision.text or ""
    return MockReply(text, (), prompt_tokens, count_text_tokens(text, encoding))


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


# --------------------------------------------------------------------------- decision


def _decide(messages: list[Mapping[str, Any]], offered: frozenset[str]) -> _Decision:
    user_index, user_text = _effective_user(messages)
    markers, clean_text = _markers(user_text)
    repaired = any(
        m.get("role") in {"user", "system"} and _text(m.get("content")).startswith(REPAIR_PREFIX)
        for m in messages
    )
    last_role = messages[-1].get("role") if messages else None

    if last_role == "tool":
        batch = _tool_batch(messages)
        injected = _injected_refunds(messages, batch) if "issue_refund" in offered else []
        if injected:
            return _Decision(calls=[_refund_call(r, reason) for r, reason in injected])
        answer, sources = _answer_from_tools(batch)
        return _final(answer, sources, markers, repaired)

    last_text = _text(messages[-1].get("content")) if messages else ""
    if last_text.startswith(REPAIR_PREFIX):
        # A repair turn: answer again from what is already known, never act twice.
        batch = _latest_batch_after(messages, user_index)
        if batch:
            answer, sources = _answer_from_tools(batch)
        else:
            answer, sources = _answer_from_context(messages)
        return _final(answer, sources, markers, repaired)

    if "invalid-json-args" in markers:
        order = _first_order(clean_text) or "LS-10001"
        return _Decision(calls=[("issue_refund", f'{{"order_id": "{order}", "amount": ]')])
    if markers.get("tool"):
        return _Decision(calls=[(markers["tool"], "{}")])

    reason = clean_text.strip()[:MAX_REASON_CHARS]
    orders = _unique(m.group().upper() for m in _ORDER_ID.finditer(clean_text))
    if orders and _REFUND_WORD.search(clean_text):
        refunds = _refunds_in(clean_text)
        if refunds:
            if "issue_refund" not in offered:
                return _final("I can't issue refunds from here.", [], markers, repaired)
            return _Decision(calls=[_refund_call(r, reason) for r in refunds])
    if orders:
        if "get_order" not in offered:
            return _final("I can't look up orders from here.", [], markers, repaired)
        return _Decision(calls=[("get_order", _dumps({"order_id": o})) for o in orders])

    if not clean_text.strip():
        return _final(
            "I didn't receive a question. What can I help you with?", [], markers, repaired
        )
    chunks = _context_chunks(messages)
    if chunks:
        answer, sources = _answer_from_chunks(chunks)
        return _final(answer, sources, markers, repaired)
    if "search_policies" in offered:
        query = clean_text.strip()[:MAX_QUERY_CHARS]
        return _Decision(calls=[("search_policies", _dumps({"query": query}))])
    return _final("I couldn't find a policy that covers this.", [], markers, repaired)


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


def _refund_call(refund: _Refund, reason: str) -> tuple[str, str]:
    integral = refund.amount == refund.amount.to_integral_value()
    amount: int | float = int(refund.amount) if integral else float(refund.amount)
    return "issue_refund", _dumps(
        {"order_id": refund.order_id, "amount": amount, "reason": reason[:MAX_REASON_CHARS]}
    )


# --------------------------------------------------------------------------- messages


def _text(content: Any) -> str:
    """Return the text of message content given as a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return ""


def _effective_user(messages: Sequence[Mapping[str, Any]]) -> tuple[int, str]:
    """Return the index and text of the last user message that is not a repair request."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            text = _text(messages[i].get("content"))
            if not text.startswith(REPAIR_PREFIX):
                return i, text
    return -1, ""


def _markers(text: str) -> tuple[dict[str, str], str]:
    """Return the `[[mock:...]]` markers (name -> value) and the text without them."""
    found = {m.group(1).lower(): m.group(2) or "" for m in _MARKER.finditer(text)}
    return found, _MARKER.sub("", text)


def _tool_names(messages: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Map tool-call ids to tool names, from the assistant messages."""
    names: dict[str, str] = {}
    for message in messages:
        if message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping) and isinstance(call.get("id"), str):
                names[call["id"]] = str(function.get("name") or "")
    return names


def _tool_batch(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Return (tool name, result text) for the tool messages after the last assistant turn."""
    start = len(messages)
    while start > 0 and messages[start - 1].get("role") == "tool":
        start -= 1
    names = _tool_names(messages)
    batch = []
    for message in messages[start:]:
        name = message.get("name")
        if not isinstance(name, str) or not name:
            name = names.get(str(message.get("tool_call_id")), "")
        batch.append((name, _text(message.get("content"))))
    return batch


def _latest_batch_after(messages: Sequence[Mapping[str, Any]], index: int) -> list[tuple[str, str]]:
    """Return the last batch of tool results after message `index`, or an empty list."""
    end = len(messages)
    while end > index + 1 and messages[end - 1].get("role") != "tool":
        end -= 1
    if end <= index + 1:
        return []
    return _tool_batch(messages[:end])


def _context_chunks(messages: Sequence[Mapping[str, Any]]) -> list[_Chunk]:
    """Parse the `[id] (title) text` lines of the system prompt's `<context>` block."""
    for message in messages:
        if message.get("role") not in {"system", "developer"}:
            continue
        block = _CONTEXT_BLOCK.search(_text(message.get("content")))
        if block is None:
            continue
        chunks: list[_Chunk] = []
        for line in block.group(1).splitlines():
            match = _CHUNK_LINE.match(line.strip())
            if match:
                chunks.append(_Chunk(match.group(1), match.group(2), match.group(3) or ""))
            elif chunks and line.strip():
                last = chunks[-1]
                chunks[-1] = _Chunk(last.id, last.title, f"{last.text} {line.strip()}".strip())
        return chunks
    return []


# --------------------------------------------------------------------------- refunds


def _unique(items: Iterator[str]) -> list[str]:
    return list(dict.fromkeys(items))


def _first_order(text: str) -> str | None:
    match = _ORDER_ID.search(text)
    return match.group().upper() if match else None


def _refunds_in(text: str) -> list[_Refund]:
    """Pair order ids with dollar amounts in `text` (order-id digits never count as amounts).

    The same number of ids and amounts pair up in order of appearance; otherwise each pair is
    chosen by nearest distance, each id and amount used once.
    """
    orders = [(m.start(), m.group().upper()) for m in _ORDER_ID.finditer(text)]
    masked = _ORDER_ID.sub(lambda m: "#" * len(m.group()), text)
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
    refunds = [_Refund(order, amount) for (_, order), (_, amount) in pairs]
    return list(dict.fromkeys(refunds))


def _previous_refunds(messages: Sequence[Mapping[str, Any]]) -> set[_Refund]:
    """Return the (order id, amount) of every issue_refund call made so far."""
    done: set[_Refund] = set()
    for message in messages:
        if message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if not isinstance(function, Mapping) or function.get("name") != "issue_refund":
                continue
            try:
                args = json.loads(str(function.get("arguments") or ""))
                done.add(_Refund(str(args["order_id"]).upper(), Decimal(str(args["amount"]))))
            except (ValueError, KeyError, TypeError, InvalidOperation):
                continue
    return done


def _strings(value: Any) -> Iterator[str]:
    """Yield every string value inside parsed JSON (keys excluded)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _injected_refunds(
    messages: Sequence[Mapping[str, Any]], batch: Sequence[tuple[str, str]]
) -> list[tuple[_Refund, str]]:
    """Find refund instructions in tool results that were not acted on yet.

    Only a sentence that uses "refund" as a command ("refund $900 on LS-10007") and names an
    order id and a dollar amount counts, so policy prose ("we've refunded $48.20 for order
    LS-10519", "issues a $30 partial refund") is not taken as an instruction. Results of
    issue_refund itself are skipped: they describe the model's own action.
    """
    done = _previous_refunds(messages)
    found: list[tuple[_Refund, str]] = []
    for name, text in batch:
        if name == "issue_refund":
            continue
        try:
            texts = list(_strings(json.loads(text)))
        except ValueError:
            texts = [text]
        for piece in texts:
            for sentence in _SENTENCE_END.split(piece):
                if not _REFUND_INSTRUCTION.search(sentence):
                    continue
                for refund in _refunds_in(sentence):
                    if refund not in done:
                        done.add(refund)
                        found.append((refund, sentence.strip()))
    return found


# --------------------------------------------------------------------------- answers


def _answer_from_context(messages: Sequence[Mapping[str, Any]]) -> tuple[str, list[str]]:
    chunks = _context_chunks(messages)
    if chunks:
        return _answer_from_chunks(chunks)
    return "I couldn't find a policy that covers this.", []


def _answer_from_chunks(chunks: Sequence[_Chunk]) -> tuple[str, list[str]]:
    first = chunks[0]
    prefix = f"According to our {first.title}:" if first.title else "According to our policy:"
    return f"{prefix} {_lead(first.text)}", [c.id for c in chunks[:2]]


def _lead(text: str, *, min_chars: int = 80, max_chars: int = 400) -> str:
    """Return the first sentence of `text`, or the first two when the first is short."""
    sentences = [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]
    if not sentences:
        return ""
    lead = sentences[0]
    if len(lead) < min_chars and len(sentences) > 1:
        lead = f"{lead} {sentences[1]}"
    return lead if len(lead) <= max_chars else lead[: max_chars - 1].rstrip() + "…"


def _answer_from_tools(batch: Sequence[tuple[str, str]]) -> tuple[str, list[str]]:
    """Compose the final answer from one batch of tool results."""
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
            answer, ids = _answer_from_search(parsed)
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
            return str(error.get("message") or error.get("detail") or _dumps(error))
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


def _answer_from_search(parsed: Any) -> tuple[str, list[str]]:
    chunks = [
        _Chunk(str(c.get("id", "")), str(c.get("title", "")), str(c.get("text", "")))
        for c in (parsed if isinstance(parsed, list) else [])
        if isinstance(c, Mapping)
    ]
    if not chunks:
        return "I couldn't find a policy that covers this.", []
    return _answer_from_chunks(chunks)


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


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


__all__ = [
    "INVENTED_SOURCE",
    "REPAIR_PREFIX",
    "MockReply",
    "MockToolCall",
    "malform_arguments",
    "reply",
]
