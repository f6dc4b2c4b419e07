"""Small helpers for reading the conversation."""

from __future__ import annotations

import re
from collections.abc import Sequence

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, HumanMessage

from core.errors import InvariantViolated


def text_of(message: BaseMessage) -> str:
    """Return the text parts of a message's content joined together."""
    content = message.content
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for part in content:
        if isinstance(part, str):
            parts.append(part)
        elif isinstance(part, dict) and part.get("type") == "text":
            parts.append(str(part.get("text", "")))
    return "".join(parts)


def last_human(messages: Sequence[AnyMessage]) -> HumanMessage | None:
    """Return the latest user message, if any."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message
    return None


FOLLOW_UP_WORDS = 12
"""A user message this short may lean on the turn before it ("did that go through?")."""
REFERS_BACK = re.compile(
    r"\b(?:it|that|this|those|these|they|them|the\s+(?:refund|order|money|request|approval)|"
    r"my\s+(?:refund|order|money|request)|go(?:ne)?\s+through|went\s+through|approved|"
    r"rejected|refund(?:ed)?|status)\b",
    re.IGNORECASE,
)
"""Words by which a follow-up points at what the turn before it did."""


def last_ai(messages: Sequence[AnyMessage]) -> AIMessage:
    """Return the latest model message; the graph only asks for it after the agent ran."""
    for message in reversed(messages):
        if isinstance(message, AIMessage):
            return message
    raise InvariantViolated("expected a model message in the conversation")
