"""A checkpoint serializer that redacts PII in user messages before anything is written.

LangGraph persists a run's input before the first node runs: with durability `sync` the raw
user message is written to `checkpoint_blobs` (the `__start__` channel and the first
`messages` version) and to `checkpoint_writes`, before input_filter can redact it. Replacing
the message in state (same id) only cleans the checkpoints *after* input_filter. This
serializer closes that gap: every value it stores has the text of user messages (HumanMessage,
`{"role": "user", ...}` dicts, `("user", text)` tuples, a bare string under `messages`)
redacted with the same function as input_filter, so the checkpoint tables never hold raw PII.
Redactions are cached per text, so re-serialising an already clean history costs a lookup.

Use it in place of the strict JsonPlusSerializer (same pickle-free msgpack allowlist):
`AsyncPostgresSaver(pool, serde=RedactingSerializer())`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer

from core.guardrails import pii

MAX_SCREENED_CHARS = 20_000
"""Longer user texts are not scanned but withheld (input_filter refuses them anyway)."""
WITHHELD = "[message withheld: too large to screen]"
_USER_ROLES = frozenset({"user", "human"})


def _clean(text: str) -> str:
    if len(text) > MAX_SCREENED_CHARS:
        return WITHHELD
    return pii.redact_text(text).text


def _clean_content(content: Any) -> Any:
    if isinstance(content, str):
        return _clean(content)
    if isinstance(content, list):
        out: list[Any] = []
        for part in content:
            if isinstance(part, str):
                out.append(_clean(part))
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append({**part, "text": _clean(part["text"])})
            else:
                out.append(part)
        return out
    return content


def redact_user_input(
    value: Any, clean: Callable[[Any], Any] = _clean_content, *, _key: str | None = None
) -> Any:
    """Return `value` with the content of every user message in it redacted.

    Walks dicts, lists and tuples; only user-message shapes are changed, everything else is
    returned as is (the same object when nothing changed).
    """
    if isinstance(value, HumanMessage):
        cleaned = clean(value.content)
        return value if cleaned == value.content else value.model_copy(update={"content": cleaned})
    if isinstance(value, dict):
        role = value.get("role", value.get("type"))
        if role in _USER_ROLES and "content" in value:
            cleaned = clean(value["content"])
            return value if cleaned == value["content"] else {**value, "content": cleaned}
        changed = {k: redact_user_input(v, clean, _key=str(k)) for k, v in value.items()}
        return value if all(changed[k] is value[k] for k in value) else changed
    if isinstance(value, tuple) and len(value) == 2 and value[0] in _USER_ROLES:
        cleaned = clean(value[1])
        return value if cleaned == value[1] else (value[0], cleaned)
    if isinstance(value, list | tuple):
        items = [redact_user_input(v, clean, _key=_key) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return type(value)(items)
    if isinstance(value, str) and _key == "messages":
        return clean(value)
    return value


class RedactingSerializer(JsonPlusSerializer):
    """Strict (pickle-free) JsonPlusSerializer that redacts user messages on the way in."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("pickle_fallback", False)
        kwargs.setdefault("allowed_msgpack_modules", None)
        super().__init__(**kwargs)

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        """Redact user text, then serialise as JsonPlusSerializer does."""
        return super().dumps_typed(redact_user_input(obj))


async def warm_up() -> None:
    """Load Presidio in a worker thread (about a second), e.g. in the server's lifespan.

    Otherwise the first checkpoint write of the process loads it on the event loop.
    """
    await asyncio.to_thread(pii.get_analyzer)


__all__ = ["MAX_SCREENED_CHARS", "RedactingSerializer", "redact_user_input", "warm_up"]
