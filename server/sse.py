r"""Server-sent events as langgraph-api writes them (the JSON is core.jsonable's).

Wire format (what `langgraph_sdk.sse.SSEDecoder` reads)::

    event: <name>\r\n
    data: <json>\r\n
    id: <seq>\r\n          (only for resumable runs)
    \r\n

plus `: heartbeat` comment blocks while nothing else is sent.
"""

from __future__ import annotations

from typing import Any

from core.jsonable import dumps

HEARTBEAT = b": heartbeat\r\n\r\n"
"""An SSE comment: keeps proxies from closing an idle stream; ignored by clients."""
HEARTBEAT_INTERVAL_S = 5.0
"""How long a stream may stay silent before a heartbeat is sent."""


def format_event(event: str, data: str, event_id: str | None = None) -> bytes:
    """Encode one SSE event whose `data` is already JSON text (no raw newlines)."""
    if "\n" in data or "\r" in data:  # JSON from dumps()/jsonb never has them; be safe
        data = data.replace("\r", "").replace("\n", "\ndata: ")
    head = f"event: {event}\r\ndata: {data}\r\n"
    if event_id is not None:
        head += f"id: {event_id}\r\n"
    return (head + "\r\n").encode()


def format_json_event(event: str, payload: Any, event_id: str | None = None) -> bytes:
    """Encode one SSE event from a Python payload."""
    return format_event(event, dumps(payload), event_id)


__all__ = [
    "HEARTBEAT",
    "HEARTBEAT_INTERVAL_S",
    "format_event",
    "format_json_event",
]
