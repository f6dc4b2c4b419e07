"""input_filter: screen the user's input before anything else sees it.

Checks, each logged with a reason code (`guardrail`, `decision`, `reason_code`; never text):
1. size and encoding (empty, too large, non-text, invalid characters): refused;
2. prompt injection and jailbreak, first layer (core.guardrails.injection): normalisation
   and weighted rules; refused unless `STEWARD_GUARD_INJECTION=false`;
3. PII and secrets (core.guardrails.pii): redacted in place, under the message's own id,
   so the model, the logs and later checkpoints only see placeholders
   (`STEWARD_GUARD_PII=block` refuses instead, `off` skips);
4. model routing for the turn (core.budget.routing);
5. prompt injection and jailbreak, second layer (core.guardrails.semantic), on what the
   rules let through: a classifier over the redacted messages' sentence embeddings, the
   whole message and each of its sentences and pairs of adjacent sentences (text-part
   boundaries cut sentences too), the highest score deciding, so an ordinary sentence put
   before or after an attack does not hide it; in a worker thread, one forward pass batched
   with concurrent turns; the retriever then finds the latest message's vector in the
   shared cache instead of embedding it again (`STEWARD_GUARD_INJECTION_SEMANTIC=false`
   skips it).
A refused turn goes to finalize, which answers politely with the reason code as `refusal`.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

from core.guardrails.pii import Redaction, redact_text
from core.guardrails.screen import screen_turn
from graph.deps import Deps
from graph.state import State
from nodes.messages import last_human, text_of
from nodes.types import Node

log = logging.getLogger(__name__)

FRESH_TURN: dict[str, Any] = {
    "refusal": None,
    "retrieved": [],
    "plan": [],
    "actions": [],
    "model_calls": 0,
    "tool_calls": 0,
    "repairs": 0,
    "stop_reason": None,
    "response": None,
    "route": None,
    "route_reason": None,
    "guardrail_codes": [],
}

WITHHELD = "[message not accepted: {reason}]"
"""What replaces a refused message's content in state, so unscreened text is not kept."""


def check_input(message: HumanMessage | None, *, max_chars: int) -> str | None:
    """Return a refusal reason code for the latest user message, or None when it is fine."""
    if message is None:
        return "empty_input"
    content = message.content
    if isinstance(content, list) and any(
        not isinstance(part, str) and not (isinstance(part, dict) and part.get("type") == "text")
        for part in content
    ):
        return "unsupported_content"
    text = text_of(message)
    if not text.strip():
        return "empty_input"
    if len(text) > max_chars:
        return "input_too_large"
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in text) or "\x00" in text:
        return "invalid_encoding"
    return None


def text_parts(message: HumanMessage) -> list[str]:
    """The text parts of a message's content (one for a plain string)."""
    content = message.content
    if isinstance(content, str):
        return [content]
    return [
        part if isinstance(part, str) else str(part.get("text", ""))
        for part in content
        if isinstance(part, str) or (isinstance(part, dict) and part.get("type") == "text")
    ]


def redacted_parts(
    messages: Sequence[HumanMessage], redacted: Sequence[Redaction]
) -> list[list[str]]:
    """Per message, its text parts as the semantic layer sees them (blocking: may redact).

    A message of several parts whose PII was redacted has each part redacted on its own, so
    the layer keeps the part boundaries without ever seeing the unredacted text.
    """
    out: list[list[str]] = []
    for message, redaction in zip(messages, redacted, strict=True):
        parts = text_parts(message)
        if len(parts) > 1 and redaction.changed:
            parts = [redact_text(part).text for part in parts]
        out.append(parts if len(parts) > 1 else [])
    return out


def new_user_messages(messages: Sequence[AnyMessage]) -> list[HumanMessage]:
    """The user messages of this turn: every HumanMessage after the last model message."""
    found: list[HumanMessage] = []
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            break
        if isinstance(message, HumanMessage):
            found.append(message)
    return found[::-1]


def make_input_filter(deps: Deps) -> Node:
    """Build the node that starts every turn: reset per-turn fields and screen the input."""
    settings = deps.settings

    async def input_filter(state: State) -> dict[str, Any]:
        """Reset the turn's working fields; refuse, redact and route the user's input."""
        turn: dict[str, Any] = {**FRESH_TURN, "turn_id": uuid.uuid4().hex}
        latest = last_human(state["messages"])
        reason = check_input(latest, max_chars=settings.max_input_chars)
        log.info(
            "guardrail decision",
            extra={
                "guardrail": "size_encoding",
                "decision": "block" if reason else "pass",
                "reason_code": reason or "acceptable",
            },
        )
        if reason is not None:
            update: dict[str, Any] = {**turn, "refusal": reason, "guardrail_codes": [reason]}
            if latest is not None and reason != "empty_input":
                update["messages"] = [
                    latest.model_copy(update={"content": WITHHELD.format(reason=reason)})
                ]
            return update

        fresh = new_user_messages(state["messages"]) or ([latest] if latest else [])
        texts = [text_of(m) for m in fresh]
        screening = await asyncio.to_thread(screen_turn, texts, settings)
        for decision in screening.decisions:
            log.info("guardrail decision", extra=decision)
        refusal, codes = screening.refusal, screening.codes
        detector = deps.injection_detector
        if refusal is None and detector is not None:
            parts = (
                await asyncio.to_thread(redacted_parts, fresh, screening.redacted)
                if any(not isinstance(m.content, str) for m in fresh)
                else []
            )
            verdict = await detector.screen([r.text for r in screening.redacted], parts)
            if verdict is not None:
                blocked = verdict.blocked(detector.threshold)
                code = verdict.category if blocked else "no_injection"
                log.info(
                    "guardrail decision",
                    extra={
                        "guardrail": "injection_semantic",
                        "decision": "block" if blocked else "pass",
                        "reason_code": code,
                        "score": verdict.score,
                        "threshold": detector.threshold,
                        "segment": verdict.segment,
                        "segments": verdict.segments,
                    },
                )
                if blocked:
                    refusal, codes = verdict.category, [*codes, verdict.category]
        replaced = [
            message.model_copy(update={"content": redaction.text})
            for message, redaction in zip(fresh, screening.redacted, strict=True)
            if redaction.changed
        ]
        update = {
            **turn,
            "refusal": refusal,
            "route": screening.route,
            "route_reason": screening.route_reason,
            "guardrail_codes": codes,
        }
        if replaced:
            update["messages"] = replaced
        return update

    return input_filter
