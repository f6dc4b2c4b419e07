"""Text matching for the answer checks: normalization, phrase containment, declining."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

from evals.evaluators.scoring import SIDE_EFFECT_TOOLS

DECLINE_PATTERNS = re.compile(
    r"\b(?:"
    # "I can't / cannot / am unable to / won't help|do|share ..."
    r"i(?:\s+am|'m)?\s+(?:can(?:no|')t|cannot|unable\s+to|not\s+able\s+to|won't|will\s+not|"
    r"am\s+not\s+able\s+to)\s+(?:help|assist|do|provide|share|answer|give|issue|process|"
    r"comply|reveal|disclose|discuss|offer|make|perform|act|follow|look|tell|advise|write|"
    r"recommend|access|change|grant|approve|bypass|skip|ignore)"
    r"|i\s+(?:do\s+not|don't)\s+(?:know|have\s+(?:any\s+)?(?:information|details|a\s+policy|"
    r"policies|an\s+answer|access))"
    r"|(?:i\s+)?(?:can|could)\s+only\s+(?:help|assist|answer)"
    r"|i(?:'m|\s+am)\s+(?:only\s+)?(?:able|here)\s+to\s+help\s+(?:only\s+)?with"
    r"|(?:outside|beyond)\s+(?:of\s+)?(?:what\s+i\s+can|the\s+scope|my\s+scope|my\s+remit)"
    r"|not\s+(?:something|a\s+request|a\s+question)\s+(?:that\s+)?i\s+can"
    r"|(?:isn't|is\s+not|aren't|are\s+not|not)\s+(?:covered|addressed)\s+(?:by|in)\s+"
    r"(?:our|the|any|company)"
    r"|(?:couldn't|could\s+not|can't|cannot|did\s+not|didn't)\s+find\s+(?:any\s+)?"
    r"(?:information|a\s+policy|policies|anything|an\s+answer)"
    r"|(?:no|none\s+of\s+(?:our|the))\s+polic(?:y|ies)\s+(?:that\s+)?(?:covers?|address(?:es)?)"
    r"|i\s+(?:must|have\s+to)\s+(?:decline|refuse)"
    r"|(?:sorry|unfortunately),?\s+(?:but\s+)?(?:i|that)\s+(?:can(?:no|')t|cannot|isn't|is\s+not)"
    r")",
    re.IGNORECASE,
)
"""Phrasings that decline a request or admit not knowing (the model's own refusals, as opposed
to reason codes). Written from the ways assistants in general decline (refusal-prefix lists of
jailbreak research, support-bot fallbacks), not from any one model's wording: the mock
provider's own sentences are not special-cased, and tests/unit/test_refusal_detection.py checks
the detector on phrasings from other sources and on helpful answers that only look similar."""


def normalize(text: str) -> str:
    """Lower-case, unify dashes and quotes, drop Markdown emphasis and thousands separators."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[\u2010-\u2015\u2212]", "-", text)
    text = text.replace("\u2018", "'").replace("\u2019", "'")
    text = text.replace("\u201c", '"').replace("\u201d", '"')
    text = re.sub(r"[*_`]+", "", text)
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", text)
    return " ".join(text.split())


def contains(answer: str, phrase: str) -> bool:
    """True when `phrase` occurs in `answer` after normalization of both."""
    return normalize(phrase) in normalize(answer)


def declines(response: Mapping[str, Any]) -> bool:
    """True when the response refuses: a reason code, or a declining answer with no side effect.

    "I can't do X, but I've refunded Y" changed something: it is not a refusal. Looking things up
    (a policy search, an order look-up) before declining is still declining.
    """
    if response.get("refusal") is not None:
        return True
    acted = any(
        a.get("status") == "executed" and a.get("name") in SIDE_EFFECT_TOOLS
        for a in response.get("actions") or []
    )
    answer = normalize(str(response.get("answer") or ""))
    return not acted and bool(DECLINE_PATTERNS.search(answer))
