"""The placeholders that replace personal data and secrets, one vocabulary everywhere.

Two engines mask text, for two jobs, and both write these placeholders:
- `core.guardrails.pii` (Presidio: checksums, phone-number grammar, detect-secrets formats)
  screens what enters and leaves the conversation; precision matters there, and a few
  milliseconds per message are affordable.
- `core.observability.redact` (a handful of guarded regular expressions) masks every log line
  and trace payload; it favours recall and must stay cheap at ~200 kB of payload per run
  (bench/observability_overhead.py), so it cannot call Presidio: on a 200-character line with
  an address, a card and a phone number it takes 35 µs where Presidio takes 12.8 ms (370x).
A reader of the state, a log line or a trace sees the same `[EMAIL]` for the same address.
"""

from __future__ import annotations

from typing import Final

PLACEHOLDERS: Final[dict[str, str]] = {
    "EMAIL_ADDRESS": "[EMAIL]",
    "PHONE_NUMBER": "[PHONE]",
    "CREDIT_CARD": "[CARD]",
    "IBAN_CODE": "[IBAN]",
    "US_SSN": "[SSN]",
    "SECRET": "[SECRET]",
}
"""What replaces each entity type (Presidio's entity names)."""

EMAIL: Final = PLACEHOLDERS["EMAIL_ADDRESS"]
PHONE: Final = PLACEHOLDERS["PHONE_NUMBER"]
CARD: Final = PLACEHOLDERS["CREDIT_CARD"]
SSN: Final = PLACEHOLDERS["US_SSN"]
SECRET: Final = PLACEHOLDERS["SECRET"]

__all__ = ["CARD", "EMAIL", "PHONE", "PLACEHOLDERS", "SECRET", "SSN"]
