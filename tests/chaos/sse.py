"""A small SSE reader for httpx streams (the chaos test and bench/stream_completeness.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True, slots=True)
class SseEvent:
    """One received event: `id` is the run_events seq when the run is resumable."""

    event: str
    data: Any
    id: int | None


async def read_events(response: httpx.Response) -> AsyncIterator[SseEvent]:
    """Yield the events of an SSE response (comments and heartbeats skipped).

    Raises whatever httpx raises when the connection breaks (e.g. `RemoteProtocolError` on an
    incomplete chunked body): the caller tells a clean end from a broken one that way.
    """
    event: str | None = None
    data: list[str] = []
    event_id: int | None = None
    async for line in response.aiter_lines():
        if line == "":
            if event is not None or data:
                text = "\n".join(data)
                try:
                    payload: Any = json.loads(text) if text else None
                except ValueError:
                    payload = text
                yield SseEvent(event or "message", payload, event_id)
            event, data, event_id = None, [], None
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id":
            try:
                event_id = int(value)
            except ValueError:
                event_id = None


__all__ = ["SseEvent", "read_events"]
