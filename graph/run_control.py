"""Stopping a run without losing the record of a side effect it performed.

A cancelled run stops at once: its task is cancelled wherever it waits. Once a node has begun
a side effect (a refund) that is no longer safe: a cancel landing between the refund's commit
and the step's checkpoint would leave a refund the thread never shows. From that point on a
stop is cooperative (LangGraph's drain): the graph finishes the step, saves its checkpoint and
stops before the next one.
"""

from __future__ import annotations

from typing import Any

from langgraph.runtime import RunControl, Runtime


class SideEffectControl(RunControl):
    """A run's control that knows whether the run has begun a side effect."""

    __slots__ = ("_side_effect_begun",)

    def __init__(self) -> None:
        super().__init__()
        self._side_effect_begun = False

    def begin_side_effect(self) -> None:
        """From now on the run must stop only at a step boundary."""
        self._side_effect_begun = True

    @property
    def side_effect_begun(self) -> bool:
        """True once a node of this run has begun a side effect."""
        return self._side_effect_begun


def begin_side_effect(runtime: Runtime[Any] | None) -> None:
    """Tell the run's control (when it is the service's) that a side effect begins."""
    control = runtime.control if runtime is not None else None
    if isinstance(control, SideEffectControl):
        control.begin_side_effect()
