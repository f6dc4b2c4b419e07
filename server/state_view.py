"""LangGraph objects → the JSON the SDK, Studio and agent-chat-ui expect.

`thread_state(snapshot)` gives a ThreadState (`values, next, checkpoint, metadata, created_at,
parent_checkpoint, tasks, interrupts`); `to_jsonable` turns messages into their
`model_dump()` dicts (`{"type": "human", "content": ..., "id": ...}`) and any other value
into plain JSON types.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

from langchain_core.messages import BaseMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Interrupt, StateSnapshot
from pydantic import BaseModel

from server.schemas import CheckpointOut, InterruptOut, ThreadOut, ThreadStateOut, ThreadTaskOut
from server.threads_repo import ThreadRow


def to_jsonable(value: Any) -> Any:
    """Convert graph values (messages, models, dataclasses, decimals ...) to JSON types."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, BaseMessage):
        return to_jsonable(value.model_dump())
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Interrupt):
        return interrupt_json(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, Enum):
        return to_jsonable(value.value)
    if isinstance(value, BaseException):
        return {"error": type(value).__name__, "message": str(value)}
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return repr(value)


def interrupt_json(interrupt: Interrupt) -> InterruptOut:
    """`{value, id}` plus `response_schema` (JSON schema) when the graph published one."""
    out: InterruptOut = {"value": to_jsonable(interrupt.value), "id": interrupt.id}
    schema = getattr(interrupt, "response_schema", None)
    if isinstance(schema, dict):
        out["response_schema"] = to_jsonable(schema)
    elif isinstance(schema, type) and issubclass(schema, BaseModel):
        out["response_schema"] = schema.model_json_schema()
    return out


def checkpoint_of(config: RunnableConfig | None) -> CheckpointOut | None:
    """The `{thread_id, checkpoint_ns, checkpoint_id, checkpoint_map}` of a config, if any."""
    if not config:
        return None
    conf = config.get("configurable") or {}
    if not conf.get("thread_id") or not conf.get("checkpoint_id"):
        return None
    return {
        "thread_id": str(conf["thread_id"]),
        "checkpoint_ns": conf.get("checkpoint_ns") or "",
        "checkpoint_id": str(conf["checkpoint_id"]),
        "checkpoint_map": to_jsonable(conf.get("checkpoint_map") or {}),
    }


def _task_error(error: Any) -> str | None:
    if error is None:
        return None
    if isinstance(error, BaseException):
        return f"{type(error).__name__}: {error}"
    return str(error)


def thread_state(snapshot: StateSnapshot) -> ThreadStateOut:
    """Render a `StateSnapshot` as a ThreadState (subgraph states rendered recursively)."""
    tasks: list[ThreadTaskOut] = []
    for task in snapshot.tasks:
        sub = task.state
        tasks.append(
            {
                "id": task.id,
                "name": task.name,
                "error": _task_error(task.error),
                "interrupts": [interrupt_json(i) for i in task.interrupts],
                "checkpoint": checkpoint_of(sub)
                if sub is not None and not isinstance(sub, StateSnapshot)
                else None,
                "state": thread_state(sub) if isinstance(sub, StateSnapshot) else None,
                "result": to_jsonable(task.result),
            }
        )
    return {
        "values": to_jsonable(snapshot.values),
        "next": list(snapshot.next),
        "tasks": tasks,
        "metadata": to_jsonable(snapshot.metadata or {}),
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint_of(snapshot.config),
        "parent_checkpoint": checkpoint_of(snapshot.parent_config),
        "interrupts": [interrupt_json(i) for i in snapshot.interrupts],
    }


def interrupts_by_task(snapshot: StateSnapshot) -> dict[str, list[InterruptOut]]:
    """The Thread `interrupts` field: task id → its pending interrupts."""
    return {
        task.id: [interrupt_json(i) for i in task.interrupts]
        for task in snapshot.tasks
        if task.interrupts
    }


def thread_json(row: ThreadRow, snapshot: StateSnapshot | None) -> ThreadOut:
    """A Thread: the row plus `values` and `interrupts` of the latest state (if loaded)."""
    return {
        "thread_id": str(row["thread_id"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "metadata": row["metadata"],
        "status": row["status"],
        "values": to_jsonable(snapshot.values) if snapshot is not None else None,
        "interrupts": interrupts_by_task(snapshot) if snapshot is not None else {},
    }


__all__ = [
    "checkpoint_of",
    "interrupt_json",
    "interrupts_by_task",
    "thread_json",
    "thread_state",
    "to_jsonable",
]
