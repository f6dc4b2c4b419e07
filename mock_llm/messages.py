"""Reading an OpenAI chat request: message text, test markers, tool-result batches, context.

Pure helpers over the request's `messages` list; nothing here decides what to answer.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

REPAIR_PREFIX = "Your last reply was not a valid final answer"
"""How the graph's repair message starts (`graph.prompts.REPAIR_PROMPT`)."""

_MARKER = re.compile(r"\[\[mock:([a-z-]+)(?:=([^\]\s]+))?\]\]", re.IGNORECASE)
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
"""Where a sentence (or a line) ends."""
_CONTEXT_BLOCK = re.compile(r"<context>(.*?)</context>", re.DOTALL)
_CHUNK_LINE = re.compile(r"^\[([^\]\s]+)\]\s+\((.*?)\)(?:\s+(.*))?$")
_CONTACT_TAG = re.compile(r"<contact>(.*?)</contact>", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One knowledge chunk: its id, title and text."""

    id: str
    title: str
    text: str


def text_of(content: Any) -> str:
    """Return the text of message content given as a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, Sequence):
        parts = []
        for part in content:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                parts.append(part["text"])
        return "\n".join(parts)
    return ""


def effective_user(messages: Sequence[Mapping[str, Any]]) -> tuple[int, str]:
    """Return the index and text of the last user message that is not a repair request."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            text = text_of(messages[i].get("content"))
            if not text.startswith(REPAIR_PREFIX):
                return i, text
    return -1, ""


def read_markers(text: str) -> tuple[dict[str, str], str]:
    """Return the `[[mock:...]]` markers (name -> value) and the text without them."""
    found = {m.group(1).lower(): m.group(2) or "" for m in _MARKER.finditer(text)}
    return found, _MARKER.sub("", text)


def _tool_names(messages: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Map tool-call ids to tool names, from the assistant messages."""
    names: dict[str, str] = {}
    for message in messages:
        if message.get("role") != "assistant":
            continue
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping) and isinstance(call.get("id"), str):
                names[call["id"]] = str(function.get("name") or "")
    return names


def tool_batch(messages: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Return (tool name, result text) for the tool messages after the last assistant turn."""
    start = len(messages)
    while start > 0 and messages[start - 1].get("role") == "tool":
        start -= 1
    names = _tool_names(messages)
    batch = []
    for message in messages[start:]:
        name = message.get("name")
        if not isinstance(name, str) or not name:
            name = names.get(str(message.get("tool_call_id")), "")
        batch.append((name, text_of(message.get("content"))))
    return batch


def latest_batch_after(messages: Sequence[Mapping[str, Any]], index: int) -> list[tuple[str, str]]:
    """Return the last batch of tool results after message `index`, or an empty list."""
    end = len(messages)
    while end > index + 1 and messages[end - 1].get("role") != "tool":
        end -= 1
    if end <= index + 1:
        return []
    return tool_batch(messages[:end])


def context_chunks(messages: Sequence[Mapping[str, Any]]) -> list[Chunk]:
    """Parse the `[id] (title) text` lines of the system prompt's `<context>` block."""
    for message in messages:
        if message.get("role") not in {"system", "developer"}:
            continue
        block = _CONTEXT_BLOCK.search(text_of(message.get("content")))
        if block is None:
            continue
        chunks: list[Chunk] = []
        for line in block.group(1).splitlines():
            match = _CHUNK_LINE.match(line.strip())
            if match:
                chunks.append(Chunk(match.group(1), match.group(2), match.group(3) or ""))
            elif chunks and line.strip():
                last = chunks[-1]
                chunks[-1] = Chunk(last.id, last.title, f"{last.text} {line.strip()}".strip())
        return chunks
    return []


def contact_of(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The `<contact>` the system prompt names for questions the policies do not cover."""
    for message in messages:
        if message.get("role") not in {"system", "developer"}:
            continue
        found = _CONTACT_TAG.search(text_of(message.get("content")))
        if found and found.group(1).strip():
            return " ".join(found.group(1).split())
    return None


def strings(value: Any) -> Iterator[str]:
    """Yield every string value inside parsed JSON (keys excluded)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


__all__ = [
    "REPAIR_PREFIX",
    "SENTENCE_END",
    "Chunk",
    "contact_of",
    "context_chunks",
    "effective_user",
    "latest_batch_after",
    "read_markers",
    "strings",
    "text_of",
    "tool_batch",
]
