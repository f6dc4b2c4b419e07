"""Model routing: routine turns to the cheap model, complex ones to the strong model.

The rule (README "Guardrails and cost"): a turn is *routine* when the user's message is short
(at most `STEWARD_ROUTING_MAX_ROUTINE_TOKENS` o200k tokens), names at most one order, asks at
most one question and shows no intent to move money or change an account (refund, cancel,
chargeback, dispute, replace, compensate, change address or payment...). Everything else is
*complex* and goes to `STEWARD_MODEL`. A routine turn escalates to the strong model for its
remaining calls as soon as it needed a repair or a tool call was denied or failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import tiktoken

from core.domain.types import order_ids
from core.tokens import count_text_tokens

Route = Literal["routine", "strong"]

ACTION_INTENT = re.compile(
    r"\b(?:refund\w*|reimburs\w*|money\s+back|chargebacks?|disput\w*|cancel\w*|compensat\w*|"
    r"goodwill|credit\s+(?:me|my)|replace(?:ment)?|reship|exchange|escalat\w*|complain\w*|"
    r"lawyer|legal|fraud\w*|charged\s+twice|double\s+charged|delete\s+(?:my\s+)?account|"
    r"change\s+(?:my\s+|the\s+)?(?:address|email|e-mail|phone|payment|card|password)|"
    r"approv\w*|override|waive\w*|price\s+(?:match|adjustment))",
    re.IGNORECASE,
)


def route_turn(
    text: str, encoding: tiktoken.Encoding, *, max_routine_tokens: int
) -> tuple[Route, str]:
    """Decide the model for a turn from the user's message; returns (route, reason code)."""
    if count_text_tokens(text, encoding) > max_routine_tokens:
        return "strong", "long_message"
    if len(order_ids(text)) > 1:
        return "strong", "several_orders"
    if ACTION_INTENT.search(text):
        return "strong", "action_intent"
    if text.count("?") > 1:
        return "strong", "several_questions"
    return "routine", "routine_question"


def escalation(repairs: int, actions: Iterable[Mapping[str, Any]]) -> str | None:
    """Why a routine turn should switch to the strong model now, if it should."""
    if repairs > 0:
        return "repair_needed"
    if any(a.get("status") in ("denied", "failed") for a in actions):
        return "tool_trouble"
    return None


__all__ = ["ACTION_INTENT", "Route", "escalation", "route_turn"]
