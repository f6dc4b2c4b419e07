"""Stopping and checkpointing a run so that no side effect is lost or repeated.

Two rules, one control object per run (the service's `RunHandle.control`):

- A cancelled run stops at once (its task is cancelled wherever it waits), except once a node
  has begun a side effect (a refund): a cancel landing between the refund's commit and the
  step's checkpoint would leave a refund the thread never shows. From then on a stop is
  cooperative (LangGraph's drain): the step finishes, is checkpointed, and the run stops.
- A run that does not checkpoint every step before the next (durability `async` or `exit`)
  stops once before a side effect (`checkpoint_before_side_effects`), which saves the
  checkpoint the side effect follows from; the runner then continues from it. A crash after
  that point continues from that checkpoint with the same tool call ids, so the refund's
  idempotency key holds; a crash before it repeats steps that had no side effect.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from langgraph.runtime import RunControl, Runtime

from graph.state import PlannedCall
from graph.tools import TOOLS

CHECKPOINT_FIRST = "checkpoint_before_side_effect"
"""The drain reason of a run stopping to save its checkpoint before a side effect."""


class SideEffectControl(RunControl):
    """A run's control that knows about the run's side effects and its durability."""

    __slots__ = ("_side_effect_begun", "durable_steps")

    def __init__(self, *, durable_steps: bool = True) -> None:
        super().__init__()
        self._side_effect_begun = False
        self.durable_steps = durable_steps
        """True when every step is saved before the next starts (durability `sync`)."""

    def request_drain(self, reason: str = "shutdown") -> None:
        """Stop at the next step boundary; a real stop outranks a checkpoint stop."""
        if reason == CHECKPOINT_FIRST and self.drain_requested:
            return
        super().request_drain(reason)

    def begin_side_effect(self) -> None:
        """From now on the run must stop only at a step boundary."""
        self._side_effect_begun = True

    @property
    def side_effect_begun(self) -> bool:
        """True once a node of this run has begun a side effect."""
        return self._side_effect_begun

    def checkpoint_first(self) -> None:
        """Stop before the next step unless steps are durable already."""
        if not self.durable_steps:
            self.request_drain(CHECKPOINT_FIRST)

    @property
    def stopped_to_checkpoint(self) -> bool:
        """True when the run stopped only to save its checkpoint (the runner continues it)."""
        return self.drain_reason == CHECKPOINT_FIRST

    def continue_after_checkpoint(self) -> None:
        """Clear the checkpoint stop before the runner continues the run."""
        if self.stopped_to_checkpoint:
            self._drain_reason = None


def _control(runtime: Runtime[Any] | None) -> SideEffectControl | None:
    control = runtime.control if runtime is not None else None
    return control if isinstance(control, SideEffectControl) else None


def begin_side_effect(runtime: Runtime[Any] | None) -> None:
    """Tell the run's control (when it is the service's) that a side effect begins."""
    if (control := _control(runtime)) is not None:
        control.begin_side_effect()


def checkpoint_before_side_effects(
    runtime: Runtime[Any] | None, plan: Iterable[PlannedCall]
) -> None:
    """Ask for a saved checkpoint before the next step when it will execute a side effect."""
    control = _control(runtime)
    if control is None:
        return
    if any(c["verdict"] == "allow" and TOOLS[c["name"]].side_effect for c in plan):
        control.checkpoint_first()
