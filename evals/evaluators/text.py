"""Text matching for the answer checks: normalization, phrase containment, declining."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Any

DECLINE_PATTERNS = re.compile(
    r"\b(?:i\s+(?:can(?:no|')t|cannot|am\s+unable|'m\s+unable|am\s+not\s+able|'m\s+not\s+able"
    r"|won't|will\s+not|(?:don't|do\s+not)\s+have\s+(?:a\s+)?polic(?:y|ies))"
    r"|(?:i\s+)?(?:can|could)\s+only\s+help"
    r"|outside\s+(?:of\s+)?(?:what|the\s+scope|my\s+scope)"
    r"|not\s+(?:something|a\s+request)\s+i\s+can"
    r"|couldn't\s+find\s+a\s+policy|no\s+policy\s+(?:that\s+)?covers)",
    re.IGNORECASE,
)
"""Phrasings that decline a request (the model's own refusals, as opposed to reason codes)."""


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
    """True when the response refuses: a reason code, or an answer that declines."""
    return response.get("refusal") is not None or bool(
        DECLINE_PATTERNS.search(normalize(str(response.get("answer") or "")))
    )
