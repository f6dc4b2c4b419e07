"""A run executing in this process (`RunHandle`), and writing while its lease lasts.

Losing the database (docs/http-service.md, "Database outages") is not a run error: recording
an end or a release is retried with backoff while the run's lease is still ours; after that
the lease expires and a reaper (on any replica) requeues the run.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg

from graph.run_control import SideEffectControl

log = logging.getLogger(__name__)

T = TypeVar("T")

DB_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError, OSError)
"""What "the database is unreachable" looks like (PoolTimeout is an OperationalError)."""
MAX_DB_LOSS_ATTEMPTS = 10
"""A run that lost the database this many times ends with `error` instead of requeueing."""
COOPERATIVE_AFTER_SIDE_EFFECT = frozenset({"interrupt", "rollback"})
"""Cancel reasons that wait for the step boundary once the run has begun a side effect (a lost
lease does not: the next attempt repeats the step, and refunds are idempotent per tool call)."""
LEASE_MARGIN_S = 1.0
"""Retrying a write stops this long before the lease (as last renewed) would expire."""


@dataclass(eq=False)
class RunHandle:
    """A run executing in this process: how to cancel or drain it."""

    run_id: uuid.UUID
    thread_id: uuid.UUID
    attempt: int
    control: SideEffectControl = field(default_factory=SideEffectControl)
    task: asyncio.Task[None] | None = None
    reason: str | None = None
    """Why the task was cancelled: interrupt, rollback, lease_lost, stalled or shutdown."""
    finishing: bool = False
    """Set once the graph has finished; cancellation no longer applies."""
    finishing_since: float | None = None
    """`time.monotonic()` when the run started finishing (the worker bounds how long)."""
    armed: bool = False
    """Set by the executor once a cancellation can be recorded (its event log is open).
    Before that a cancel only notes its reason, which the executor acts on when it arms: a
    task cancelled before it ran a line would end without recording anything, and the run
    would wait out its lease."""
    lease_until: float = field(default_factory=lambda: time.monotonic() + 30.0)
    """Until when (monotonic) the lease is surely ours: set at the claim and at every
    successful renewal, from the time before the statement was sent."""
    live_wanted: bool = False
    """A client joined the run's stream: its events are to be stored as they come."""
    _on_live: Callable[[], None] | None = field(default=None, repr=False)

    def want_live(self) -> None:
        """A client follows the run: tell its event writer (now, or once it has one)."""
        self.live_wanted = True
        if self._on_live is not None:
            self._on_live()

    def when_live_wanted(self, callback: Callable[[], None]) -> None:
        """Call `callback()` when a client follows the run (at once if one already does)."""
        self._on_live = callback
        if self.live_wanted:
            callback()

    def start_finishing(self) -> None:
        """The graph is done: from now on only recording its end remains."""
        if not self.finishing:
            self.finishing = True
            self.finishing_since = time.monotonic()

    @property
    def executing(self) -> bool:
        """True while the run's task is alive."""
        return self.task is not None and not self.task.done()

    def cancel(self, reason: str, *, force: bool = False) -> None:
        """Cancel the run's task (the first reason wins; ignored once it is finishing).

        A hard stop (a lost lease, a stalled finish, the end of the shutdown grace) still
        cancels a run an earlier `interrupt` or `rollback` only drained.

        A run that has begun a side effect is not cancelled but drained for `interrupt` and
        `rollback`: it stops at the next step boundary, once the step that recorded the side
        effect is checkpointed (`graph.run_control`). `force` cancels a finishing run too (one
        stuck recording its end: the worker stopped renewing its lease, and the reaper gives it
        to another attempt).
        """
        if self.task is None or self.task.done():
            return
        if self.reason is not None and not self._only_drained(reason):
            return
        if self.finishing and not force:
            return
        self.reason = reason
        if not (self.armed or force):
            return
        if reason in COOPERATIVE_AFTER_SIDE_EFFECT and self.control.side_effect_begun:
            self.control.request_drain(reason)
            return
        self.task.cancel()

    def _only_drained(self, reason: str) -> bool:
        """True when an earlier cancel only drained and `reason` must stop the task at once."""
        drained = self.reason in COOPERATIVE_AFTER_SIDE_EFFECT and self.control.drain_requested
        return drained and reason not in COOPERATIVE_AFTER_SIDE_EFFECT

    def drain(self) -> None:
        """Ask the graph to stop at the next step boundary (graceful shutdown)."""
        self.control.request_drain("shutdown")


async def while_leased(
    running: Mapping[uuid.UUID, RunHandle],
    run: dict[str, Any],
    what: str,
    write: Callable[[], Awaitable[T]],
) -> T:
    """Run `write()`, retrying with backoff while the database is unreachable.

    Retries stop once the run's lease (as last renewed) is about to expire: then the
    last error is raised, the run is left to its lease, and a reaper requeues it.

    Args:
        running: the worker's runs executing here (where the run's lease deadline is).
        run: the `runs` row.
        what: what is written, for the log.
        write: the write to retry.
    """
    handle = running.get(run["run_id"])
    delay = 0.2
    tries = 0
    while True:
        try:
            return await write()
        except DB_ERRORS as exc:
            tries += 1
            until = handle.lease_until if handle is not None else 0.0
            if time.monotonic() + delay > until - LEASE_MARGIN_S:
                log.warning(
                    "run %s: %s failed %d times (%s: %s); leaving the run to its lease",
                    run["run_id"],
                    what,
                    tries,
                    type(exc).__name__,
                    exc,
                )
                raise
            if tries == 1:
                log.warning(
                    "run %s: %s failed (%s: %s); retrying while the lease lasts",
                    run["run_id"],
                    what,
                    type(exc).__name__,
                    exc,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
