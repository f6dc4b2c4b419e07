"""JSON for graph values: messages, interrupts, commands, pydantic models, Decimals, ...

One converter for everything the service and the evals write (SSE data, run output, thread
state, jsonb rows): `dumps` gives JSON text, `to_jsonable` plain JSON types, `interrupt_json`
an interrupt as clients see it (`{value, id}` plus `response_schema` when the graph published
one), `pg_text` a string for a text column. Objects without a JSON form become their `repr`,
keys that are not strings their `str`, and non-finite floats `null`, rather than failing; NUL
characters become U+FFFD, as Postgres cannot store them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import json
import math
import re
import uuid
from collections.abc import Mapping
from typing import Any, cast

import orjson
from langchain_core.messages import BaseMessage
from langgraph.types import Command, Interrupt, Send
from pydantic import BaseModel

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _interrupt(value: Interrupt) -> dict[str, Any]:
    """An interrupt's fields, not yet converted: `value`, `id`, `response_schema` if any."""
    out: dict[str, Any] = {"value": value.value, "id": value.id}
    schema = getattr(value, "response_schema", None)
    if isinstance(schema, dict):
        out["response_schema"] = schema
    elif isinstance(schema, type) and issubclass(schema, BaseModel):
        out["response_schema"] = schema.model_json_schema()
    return out


def _default(obj: Any) -> Any:
    """Orjson's fallback for the types it does not know."""
    if isinstance(obj, BaseMessage):
        return obj.model_dump()
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if isinstance(obj, Interrupt):
        return _interrupt(obj)
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


def _plain(obj: Any) -> Any:
    """Plain JSON types for what orjson refuses: non-string keys, integers beyond 64 bits."""
    if obj is None or isinstance(obj, str | bool | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    return _plain(_default(obj))


def dumps(obj: Any) -> str:
    """Serialize a graph value to JSON text (see the module docstring for the rules)."""
    try:
        text = orjson.dumps(obj, default=_default, option=_OPTIONS).decode()
    except TypeError:  # orjson.JSONEncodeError: e.g. a tuple key, an integer beyond 64 bits
        text = json.dumps(_plain(obj), ensure_ascii=False, allow_nan=False)
    return _NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def to_jsonable(obj: Any) -> Any:
    """Return `obj` as plain JSON types (dicts, lists, str, numbers, bool, None)."""
    return orjson.loads(dumps(obj))


def pg_text(text: str | None) -> str | None:
    """`text` as a Postgres text column can hold it: NUL characters become U+FFFD."""
    return None if text is None else text.replace("\x00", "\ufffd")


def interrupt_json(value: Interrupt) -> dict[str, Any]:
    """`{value, id}` plus `response_schema` (JSON schema) when the graph published one.

    The shape of `server.schemas.InterruptOut`; `state_view` types it as that.
    """
    return cast("dict[str, Any]", to_jsonable(_interrupt(value)))


__all__ = ["dumps", "interrupt_json", "pg_text", "to_jsonable"]
