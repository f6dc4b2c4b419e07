"""input_filter: refuse empty, oversized and non-text input with a reason code."""

from __future__ import annotations

import logging
from typing import Any

from langchain_core.messages import HumanMessage

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
}


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


def make_input_filter(deps: Deps) -> Node:
    """Build the node that starts every turn: reset per-turn fields and screen the input."""

    async def input_filter(state: State) -> dict[str, Any]:
        """Reset the turn's working fields and refuse input the service cannot accept."""
        reason = check_input(
            last_human(state["messages"]), max_chars=deps.settings.max_input_chars
        )
        if reason is not None:
            log.info("input refused", extra={"reason_code": reason})
        return {**FRESH_TURN, "refusal": reason}

    return input_filter
