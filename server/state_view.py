"""LangGraph objects → the JSON the SDK, Studio and agent-chat-ui expect.

`thread_state(snapshot)` gives a ThreadState (`values, next, checkpoint, metadata, created_at,
parent_checkpoint, tasks, interrupts`), with values converted by core.jsonable (messages
become their `model_dump()` dicts: `{"type": "human", "content": ..., "id": ...}`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.types import Interrupt, StateSnapshot

from core.identity import without_identity
from core.jsonable import interrupt_json, to_jsonable
from server.schemas import CheckpointOut, InterruptOut, ThreadOut, ThreadStateOut, ThreadTaskOut
from server.threads_repo import ThreadRow


def _interrupt_out(interrupt: Interrupt) -> InterruptOut:
    return cast("InterruptOut", interrupt_json(interrupt))


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
                "interrupts": [_interrupt_out(i) for i in task.interrupts],
                "checkpoint": checkpoint_of(sub)
                if sub is not None and not isinstance(sub, StateSnapshot)
                else None,
                "state": thread_state(sub) if isinstance(sub, StateSnapshot) else None,
                "result": to_jsonable(task.result),
            }
        )
    checkpoint = checkpoint_of(snapshot.config)
    parent = checkpoint_of(snapshot.parent_config)
    return {
        "values": to_jsonable(snapshot.values),
        "next": list(snapshot.next),
        "tasks": tasks,
        "metadata": to_jsonable(without_identity(snapshot.metadata or {})),
        "created_at": snapshot.created_at,
        "checkpoint": checkpoint,
        "parent_checkpoint": parent,
        "interrupts": [_interrupt_out(i) for i in snapshot.interrupts],
        # The deprecated flat ids langgraph-api still sends (older clients read them).
        "checkpoint_id": checkpoint["checkpoint_id"] if checkpoint else None,
        "parent_checkpoint_id": parent["checkpoint_id"] if parent else None,
    }


def interrupts_by_task(snapshot: StateSnapshot) -> dict[str, list[InterruptOut]]:
    """The Thread `interrupts` field: task id → its pending interrupts."""
    return {
        task.id: [_interrupt_out(i) for i in task.interrupts]
        for task in snapshot.tasks
        if task.interrupts
    }


def _checkpoint_time(snapshot: StateSnapshot | None) -> datetime | None:
    """The latest checkpoint's time as a datetime, so it serialises like the row's times."""
    if snapshot is None or not snapshot.created_at:
        return None
    return datetime.fromisoformat(snapshot.created_at)


def thread_json(row: ThreadRow, snapshot: StateSnapshot | None) -> ThreadOut:
    """A Thread: the row plus `values` and `interrupts` of the latest state (if loaded)."""
    return {
        "thread_id": str(row["thread_id"]),
        "created_at": row["created_at"],
        "updated_at": row["updated_at"],
        "state_updated_at": _checkpoint_time(snapshot) or row["updated_at"],
        "metadata": row["metadata"],
        "status": row["status"],
        "values": to_jsonable(snapshot.values) if snapshot is not None else None,
        "interrupts": interrupts_by_task(snapshot) if snapshot is not None else {},
        "config": {},
    }


__all__ = [
    "checkpoint_of",
    "interrupts_by_task",
    "thread_json",
    "thread_state",
]
