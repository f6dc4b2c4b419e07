"""Events a dead attempt checkpointed but never stored, rebuilt from the thread's checkpoints.

LangGraph yields a step's `updates` and `values` only after that step's checkpoint is saved
(durability `sync`), and the executor stores events in batches. A replica that dies in
between leaves checkpoints whose events were never stored: the next attempt continues after
them and would never emit them again, so the run's stream would miss them (often its last
`updates` and final `values`).

The checkpoints are the durable record, and each step's events are a function of them: the
`updates` of a step are the results of the tasks that produced its checkpoint (held by the
parent checkpoint's pending writes), its `values` are the checkpoint's values, and an
interrupt is the checkpoint's pending interrupts. `step_events` rebuilds exactly what
`RunExecutor._stream` emitted for a run's checkpointed steps (tested against live streams);
`missing_events` compares that with what is stored and returns the tail to append.

A step whose writes died with the replica (its checkpoint was saved, they were not) keeps its
`values` (the checkpoint's) and streams its update as `{name: None}`: what the task returned
is not recorded anywhere else.

Token chunks (`messages`), `custom` events, subgraph events (`updates|ns`) and the empty
`__interrupt__` of an `interrupt_before/after` breakpoint are not rebuilt. The rebuild follows
one task per step in order (Steward's graph); where the stored events are not a prefix of the
rebuilt ones (e.g. parallel tasks streamed in completion order), nothing is added rather
than something wrong.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot

from core.jsonable import dumps

STEP_EVENTS = frozenset({"updates", "values"})
"""The event names rebuilt from checkpoints."""


def _step(
    parent: StateSnapshot, snapshot: StateSnapshot, requested: Sequence[str]
) -> list[tuple[str, Any]]:
    """The events `_stream` emits after `snapshot`'s checkpoint was saved."""
    wants_updates = "updates" in requested
    wants_values = "values" in requested
    events: list[tuple[str, Any]] = []
    # A task that interrupted and was not resumed has no result; a resumed one has.
    finished = [t for t in parent.tasks if t.result is not None or not t.interrupts]
    if wants_updates:
        for task in finished:
            if not task.name.startswith("__"):  # LangGraph hides `__start__`
                # A task that wrote no output channel streams as `{name: None}`.
                events.append(("updates", {task.name: task.result or None}))
    # `values` streams only when the step wrote an output channel. LangGraph saves a task's
    # writes beside the next checkpoint, not before it: a replica that died in between left
    # the checkpoint without the writes, so a changed state says the step wrote too.
    if wants_values and (any(t.result for t in finished) or snapshot.values != parent.values):
        events.append(("values", snapshot.values))
    interrupts = [i for task in snapshot.tasks for i in task.interrupts]
    if interrupts:
        if wants_updates:
            events.append(("updates", {"__interrupt__": interrupts}))
        if wants_values:
            events.append(("values", {**snapshot.values, "__interrupt__": interrupts}))
        elif not wants_updates:
            events.append(("values", {"__interrupt__": interrupts}))
    return events


async def step_events(
    graph: CompiledStateGraph[Any, Any, Any, Any],
    thread: RunnableConfig,
    run_id: str,
    requested: Sequence[str],
) -> list[tuple[str, str]]:
    """`(event, json)` of every step run `run_id` checkpointed on `thread`, oldest first."""
    history = [s async for s in graph.aget_state_history(thread)]
    history.reverse()
    events: list[tuple[str, str]] = []
    first = True
    for parent, snapshot in itertools.pairwise(history):
        meta = snapshot.metadata or {}
        if meta.get("run_id") != run_id or meta.get("source") != "loop":
            continue
        resumed = (parent.metadata or {}).get("run_id") != run_id
        if first and resumed and "values" in requested:
            # A run that starts from an earlier checkpoint (a resume) first streams its values.
            events.append(("values", dumps(parent.values)))
        first = False
        events.extend((name, dumps(data)) for name, data in _step(parent, snapshot, requested))
    return events


def missing_events(
    stored: Sequence[tuple[str, str]], rebuilt: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """The rebuilt events that come after what is stored (`updates`/`values` compared only).

    Stored events are a prefix of what the run emitted (batches are written in order), so
    the answer is the rebuilt tail after the stored ones. When the stored events are not a
    prefix of the rebuilt ones (nothing to align on), nothing is added.
    """
    kept = [(name, json.loads(data)) for name, data in stored if name in STEP_EVENTS]
    expected = [(name, json.loads(data)) for name, data in rebuilt]
    if kept != expected[: len(kept)]:
        return []
    return list(rebuilt[len(kept) :])


__all__ = ["STEP_EVENTS", "missing_events", "step_events"]
