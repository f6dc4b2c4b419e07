"""Classify what a run was invoked with (new input, a resume, a continuation) for its log."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.observability.redact import redact_text

INPUT_PREVIEW_CHARS = 200


def message_text(message: Any) -> tuple[str | None, str]:
    """Return (role, text) of a message given as a dict, a LangChain message or a tuple."""
    if isinstance(message, Mapping):
        role = message.get("role") or message.get("type")
        content = message.get("content", "")
    elif isinstance(message, tuple | list) and len(message) == 2:
        role, content = message[0], message[1]
    else:
        role = getattr(message, "type", None)
        content = getattr(message, "content", "")
    if isinstance(content, list):
        parts = [
            p if isinstance(p, str) else str(p.get("text", ""))
            for p in content
            if isinstance(p, str) or (isinstance(p, Mapping) and p.get("type") == "text")
        ]
        content = "".join(parts)
    return (str(role) if role is not None else None), str(content)


def describe_input(inputs: Any) -> tuple[str, dict[str, Any]]:
    """Classify a run's input (`input`, `resume`, `continue`) and summarise it for the log.

    The user text is truncated and masked: the log gets a redacted preview, never raw input.
    A resume is summarised by the types of its approval decisions.
    """
    if inputs is None:
        return "continue", {}
    resume = getattr(inputs, "resume", None)
    if resume is not None or type(inputs).__name__ == "Command":
        decisions = resume.get("decisions") if isinstance(resume, Mapping) else None
        types = [str(d.get("type")) for d in decisions or [] if isinstance(d, Mapping)]
        return "resume", {"decisions": types}
    if isinstance(inputs, Mapping):
        messages = inputs.get("messages")
        if isinstance(messages, Sequence) and not isinstance(messages, str) and messages:
            role, text = message_text(messages[-1])
            preview = redact_text(text[:INPUT_PREVIEW_CHARS])
            return "input", {"input_role": role, "input_chars": len(text), "input_preview": preview}
    return "input", {}


__all__ = ["INPUT_PREVIEW_CHARS", "describe_input", "message_text"]
