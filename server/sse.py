r"""Server-sent events as langgraph-api writes them, and JSON for graph output.

Wire format (what `langgraph_sdk.sse.SSEDecoder` reads)::

    event: <name>\r\n
    data: <json>\r\n
    id: <seq>\r\n          (only for resumable runs)
    \r\n

plus `: heartbeat` comment blocks while nothing else is sent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import re
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
from langchain_core.messages import BaseMessage
from langgraph.types import Command, Interrupt, Send
from pydantic import BaseModel

HEARTBEAT = b": heartbeat\r\n\r\n"
"""An SSE comment: keeps proxies from closing an idle stream; ignored by clients."""
HEARTBEAT_INTERVAL_S = 5.0
"""How long a stream may stay silent before a heartbeat is sent."""

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def interrupt_json(value: Interrupt) -> dict[str, Any]:
    """An interrupt as clients see it: `{"value", "id"}`."""
    return {"value": value.value, "id": value.id}


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseMessage):
        return obj.model_dump()
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, Interrupt):
        return interrupt_json(obj)
    if isinstance(obj, Send):
        return {"node": obj.node, "arg": obj.arg}
    if isinstance(obj, Command):
        return {
            k: v
            for k, v in {
                "graph": obj.graph,
                "update": obj.update,
                "resume": obj.resume,
                "goto": obj.goto,
            }.items()
            if v not in (None, ())
        }
    if isinstance(obj, decimal.Decimal):
        return str(obj)
    if isinstance(obj, set | frozenset):
        return list(obj)
    if isinstance(obj, bytes):
        return obj.decode("utf-8", errors="replace")
    if isinstance(obj, BaseException):
        return {"error": type(obj).__name__, "message": str(obj)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, enum.Enum | uuid.UUID):
        return str(obj)
    return repr(obj)


def dumps(obj: Any) -> str:
    """Serialize graph output (messages, interrupts, pydantic models, Decimals...) to JSON.

    Objects without a JSON form are written as their `repr` rather than failing the stream.
    NUL characters are replaced, as Postgres `jsonb` cannot store them.
    """
    text = orjson.dumps(obj, default=_default, option=_OPTIONS).decode()
    return _NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def to_jsonable(obj: Any) -> Any:
    """Return `obj` as plain JSON types (dicts, lists, str, numbers, bool, None)."""
    return orjson.loads(dumps(obj))


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
    "dumps",
    "format_event",
    "format_json_event",
    "interrupt_json",
    "to_jsonable",
]
