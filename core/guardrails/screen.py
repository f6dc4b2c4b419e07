"""Screen one turn's user text: prompt injection, PII redaction, model route (pure, blocking).

`screen_turn` does the CPU work of input_filter in one call so the node can run it in a worker
thread (the first call also loads Presidio and spaCy, about a second).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.budget.routing import Route, route_turn
from core.guardrails.injection import detect_injection
from core.guardrails.pii import Redaction, redact_text
from core.settings import Settings
from core.tokens import get_encoding

PII_DETECTED = "pii_detected"


@dataclass(frozen=True, slots=True)
class Screening:
    """The guardrails' verdict on one turn; holds no user text except the redacted copies."""

    refusal: str | None
    redacted: tuple[Redaction, ...]
    """One per input text, in order (unchanged texts have no entities)."""
    route: Route
    route_reason: str
    decisions: tuple[dict[str, Any], ...] = field(default=())
    """Log records: `guardrail`, `decision`, `reason_code` and details (codes only)."""

    @property
    def codes(self) -> list[str]:
        """Reason codes for the state's `guardrail_codes` (no values, no text)."""
        out: list[str] = []
        for item in self.decisions:
            if item["decision"] != "pass":
                out.append(str(item["reason_code"]))
        return out


def screen_turn(texts: Sequence[str], settings: Settings) -> Screening:
    """Check the user's new messages of a turn.

    Args:
        texts: the text of each new user message, oldest first.
        settings: which checks run and their thresholds.
    """
    decisions: list[dict[str, Any]] = []
    refusal: str | None = None
    joined = "\n".join(texts)

    if settings.guard_injection:
        verdict = detect_injection(joined)
        blocked = verdict.blocked(settings.injection_threshold)
        category = verdict.category if blocked else None
        decisions.append(
            {
                "guardrail": "injection",
                "decision": "block" if blocked else "pass",
                "reason_code": category or "no_injection",
                "score": verdict.score,
                "rules": list(verdict.rules),
            }
        )
        refusal = category

    if settings.guard_pii != "off":
        redacted = tuple(redact_text(text) for text in texts)
        entities = sorted({e for r in redacted for e in r.entities})
        code: str
        if entities and settings.guard_pii == "block":
            decision, code = "block", PII_DETECTED
            refusal = refusal or PII_DETECTED
        elif entities:
            decision, code = "redact", "pii_redacted"
        else:
            decision, code = "pass", "no_pii"
        decisions.append(
            {"guardrail": "pii", "decision": decision, "reason_code": code, "entities": entities}
        )
    else:
        redacted = tuple(Redaction(text, ()) for text in texts)

    clean = "\n".join(r.text for r in redacted)
    route, reason = route_turn(
        clean, get_encoding("o200k_base"), max_routine_tokens=settings.routing_max_routine_tokens
    )
    decisions.append(
        {"guardrail": "routing", "decision": "pass", "reason_code": reason, "route": route}
    )
    return Screening(
        refusal=refusal,
        redacted=redacted,
        route=route,
        route_reason=reason,
        decisions=tuple(decisions),
    )


__all__ = ["PII_DETECTED", "Screening", "screen_turn"]
