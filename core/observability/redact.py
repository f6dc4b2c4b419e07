"""PII and secret masking shared by the log processors and the LangSmith anonymizer.

Defence in depth: the input filter keeps raw user text out of state, but log lines (our own,
LangChain's, the OpenAI client's DEBUG request dumps) and trace payloads can still carry it.
Everything that leaves the process through logs or LangSmith passes through `redact_text`.
The placeholders are those of the guardrails (`core.placeholders` says why there are two
engines).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from core.placeholders import CARD, EMAIL, PHONE, SECRET, SSN

# Every pattern starts with a literal or a small character class, and runs only when a cheap
# substring test says it can match: masking ~200 kB of LangSmith payload per run must stay
# cheap (see bench/observability_overhead.py).
_EMAIL_DOMAIN = re.compile(r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_EMAIL_LOCAL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_KEYS: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("stw_", re.compile(r"stw_[0-9a-f]{8}_[A-Za-z0-9_-]{16,}"), SECRET),  # Steward
    ("sk-", re.compile(r"sk-[A-Za-z0-9_-]{16,}"), SECRET),  # OpenAI
    ("lsv2_", re.compile(r"lsv2_[A-Za-z0-9_]{16,}"), SECRET),  # LangSmith
    (
        "eyJ",
        re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
        SECRET,
    ),  # JWT
)
_BEARER = re.compile(r"\b[Bb][Ee][Aa][Rr][Ee][Rr]\s+[A-Za-z0-9._~+/=-]{12,}")
_NUMBER_CANDIDATE = re.compile(r"[+\d][\d ().-]{7,}\d")
"""Digit runs that could hold a card number, an SSN or a phone number."""
_NUMBERS = re.compile(
    r"(?P<ssn>(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-]))"
    r"|(?P<phone>(?<![\w+])\+\d[\d ().-]{7,}\d(?!\w))"
    # 13-19 digits, optionally grouped by single spaces or dashes (card numbers). No Luhn
    # check on purpose: a mistyped card number is still personal data.
    r"|(?P<card>(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-]))"
)
_REPLACEMENTS = {"ssn": SSN, "phone": PHONE, "card": CARD}

SENSITIVE_KEYS = frozenset(
    {
        "password",
        "passwd",
        "secret",
        "client_secret",
        "api_key",
        "apikey",
        "x-api-key",
        "x_api_key",
        "authorization",
        "cookie",
        "set-cookie",
        "token",
        "access_token",
        "refresh_token",
        "openai_api_key",
        "langsmith_api_key",
    }
)
"""Mapping keys whose values are replaced wholesale (compared case-insensitively)."""

REDACTED = SECRET
"""What replaces the value of a sensitive key."""
_MAX_DEPTH = 8
_MIN_MATCH = 6
"""No pattern matches fewer characters (`a@b.co`): shorter strings skip the regex."""


def _replace_number(match: re.Match[str]) -> str:
    return _REPLACEMENTS[match.lastgroup or "card"]


def _mask_emails(text: str) -> str:
    pieces: list[str] = []
    last = 0
    for match in _EMAIL_DOMAIN.finditer(text):
        start = match.start()
        while start > last and text[start - 1] in _EMAIL_LOCAL:
            start -= 1
        if start == match.start():
            continue  # "@handle.io" without a local part is not an address
        pieces.append(text[last:start])
        pieces.append(EMAIL)
        last = match.end()
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def _mask_keys(text: str) -> str:
    for marker, pattern, replacement in _KEYS:
        if marker in text:

            def replace(match: re.Match[str], replacement: str = replacement) -> str:
                before = match.string[match.start() - 1] if match.start() else " "
                # Inside a longer word ("risk-assessment-...") it is not a key.
                return match.group(0) if before.isalnum() or before == "_" else replacement

            text = pattern.sub(replace, text)
    if "earer" in text or "EARER" in text:
        text = _BEARER.sub(f"Bearer {SECRET}", text)
    return text


def _mask_numbers(text: str) -> str:
    pieces: list[str] = []
    last = 0
    for candidate in _NUMBER_CANDIDATE.finditer(text):
        # One character of context on each side for the patterns' look-arounds.
        start = max(candidate.start() - 1, last)
        end = min(candidate.end() + 1, len(text))
        window = text[start:end]
        masked = _NUMBERS.sub(_replace_number, window)
        if masked != window:
            pieces.append(text[last:start])
            pieces.append(masked)
            last = end
    if not pieces:
        return text
    pieces.append(text[last:])
    return "".join(pieces)


def redact_text(text: str) -> str:
    """Mask e-mail addresses, card numbers, SSNs, phone numbers and API keys in `text`.

    Args:
        text: any string (a log message, a rendered exception, a prompt).

    Returns:
        The string with every match replaced by its placeholder (`core.placeholders`),
        such as `[EMAIL]`.
    """
    if len(text) < _MIN_MATCH:
        return text
    if "@" in text:
        text = _mask_emails(text)
    text = _mask_keys(text)
    return _mask_numbers(text)


def redact_value(value: Any, *, depth: int = 0) -> Any:
    """Return `value` with every string inside it masked (mappings, lists, tuples, sets).

    Objects that are not JSON primitives are converted with `str()` first, so a message or
    exception object cannot smuggle raw text past the masking when it is rendered later.
    """
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if depth >= _MAX_DEPTH:
        return redact_text(str(value))
    if isinstance(value, Mapping):
        return redact_mapping(value, depth=depth + 1)
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item, depth=depth + 1) for item in value]
    return redact_text(str(value))


def redact_mapping(mapping: Mapping[Any, Any], *, depth: int = 0) -> dict[Any, Any]:
    """Mask a mapping: sensitive keys lose their value, every other value is `redact_value`d."""
    out: dict[Any, Any] = {}
    for key, value in mapping.items():
        if isinstance(key, str) and key.lower() in SENSITIVE_KEYS and value is not None:
            out[key] = REDACTED
        else:
            out[key] = redact_value(value, depth=depth)
    return out


__all__ = ["REDACTED", "SENSITIVE_KEYS", "redact_mapping", "redact_text", "redact_value"]
