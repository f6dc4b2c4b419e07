"""Run events: the writer (worker side) and following a run (API side).

Every replica streams a run by tailing its `run_events` rows, whichever replica executes it.
A run's worker stores its events `live`, in small batches as they come, each with a
`NOTIFY steward_run_events, '<run_id>:events'`, or `deferred`, all in the run's final
transaction, when nobody streams it (`runs.events_mode`, set when the run is created: see
docs/http-service.md, "Event logs"). A client that joins a deferred run's stream asks its
worker to store what it buffered and go on live (`steward_run_stream`, or the worker's next
lease renewal), and starts at the live edge once that is done. One LISTEN connection per
process (`server.runs.hub.EventHub`) wakes the local followers, and each follower also polls
as a safety net (a dropped LISTEN connection only adds latency, never loses events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Collection
from typing import Any

import psycopg

from core.db.outage import connection_lost
from core.db.pool import DbPool
from core.jsonable import dumps
from server.runs import repo
from server.runs.hub import DEGRADED_POLL_INTERVAL_S, EventHub, RunWaiter
from server.runs.models import TERMINAL_STATUSES

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.02
"""How long a live writer gathers events before one INSERT (and one NOTIFY)."""
DEFERRED_MAX_BYTES = 1_000_000
"""A deferred writer stores its buffer (and stays deferred) once it holds this much JSON."""
TAIL_BATCH = 500
REBUILT_MODES = frozenset({"values", "updates"})
"""Stream modes whose events a takeover rebuilds from checkpoints (`server.runs.recovery`)."""


def events_mode_for(kwargs: dict[str, Any], *, streamed: bool) -> str:
    """How a new run's worker writes its events (`runs.events_mode`): `live` or `deferred`.

    Deferred only when nobody streams it yet (not created by a stream route) and a takeover
    would rebuild every event a dead replica held in memory: `values`/`updates` modes, no
    subgraph events, no breakpoints (their empty `__interrupt__` is not rebuilt).
    """
    if streamed or kwargs.get("stream_subgraphs"):
        return "live"
    if kwargs.get("interrupt_before") or kwargs.get("interrupt_after"):
        return "live"
    modes = set(kwargs.get("stream_mode") or ["values"])
    return "deferred" if modes <= REBUILT_MODES else "live"


class EventWriter:
    """Buffers one run's events and appends them to `run_events`.

    Live, it stores them in small batches as they come. Deferred, it keeps them for the run's
    final transaction (`take`), storing a batch only when the buffer passes
    `DEFERRED_MAX_BYTES`, until `go_live()`: then what it holds is stored and the run marked
    `live` in one transaction, and batches follow as they come. Writes are fenced by
    `(worker_id, attempt)`: once another replica took the run over, the writer stops (`lost`
    is set and `on_lost` is called).
    """

    def __init__(
        self,
        pool: DbPool,
        hub: EventHub,
        run_id: uuid.UUID,
        *,
        fence: tuple[str, int],
        next_seq: int,
        on_lost: Callable[[], None] | None = None,
        live: bool = True,
    ) -> None:
        self._pool = pool
        self._hub = hub
        self.run_id = run_id
        self._fence = fence
        self._seq = next_seq
        self._buffer: list[tuple[int, str, str]] = []
        self._buffered = 0
        """Characters of JSON in the buffer."""
        self._has_data = asyncio.Event()
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closing = asyncio.Event()
        self.live = live
        self._announce = False
        """`go_live` was called: the next flush marks the run `live`."""
        self.lost = False

    def start(self) -> None:
        """Start the background flusher."""
        self._task = asyncio.create_task(self._flush_loop(), name=f"run-events-{self.run_id}")

    def emit(self, event: str, data: Any) -> None:
        """Queue one event (serialized now, so later mutation of `data` cannot leak in)."""
        self.emit_json(event, dumps(data))

    def emit_json(self, event: str, data: str) -> None:
        """Queue one event whose data is already JSON (events rebuilt from checkpoints)."""
        self._buffer.append((self._seq, event, data))
        self._seq += 1
        self._buffered += len(data)
        if self.live or self._buffered >= DEFERRED_MAX_BYTES:
            self._has_data.set()

    def go_live(self) -> None:
        """Someone follows the run: store what is buffered, then every batch as it comes."""
        if self.live or self._closing.is_set():
            return  # a closing writer's events all go into the final transaction
        self.live = True
        self._announce = True
        self._has_data.set()

    def take(self) -> list[tuple[int, str, str]]:
        """Remove and return the unflushed events (to write them in the final transaction)."""
        events, self._buffer = self._buffer, []
        self._buffered = 0
        self._has_data.clear()
        return events

    async def close(self) -> None:
        """Stop the flusher; unflushed events stay buffered for the final transaction.

        The flusher is asked to stop, never cancelled: a flush that already took a batch
        completes (or puts the batch back), so no event is lost on the way.
        """
        if self._task is not None:
            self._closing.set()
            self._has_data.set()
            task, self._task = self._task, None
            with contextlib.suppress(asyncio.CancelledError):
                await task
        async with self._lock:  # let an in-flight flush finish
            pass

    async def flush(self) -> None:
        """Append the buffered events now (and mark the run `live` after `go_live`)."""
        async with self._lock:
            announce = self._announce
            events = self.take()
            if (not events and not announce) or self.lost:
                return
            try:
                async with self._pool.connection() as conn, conn.transaction():
                    ok = await repo.insert_events(conn, self.run_id, events, fence=self._fence)
                    if ok and announce:
                        ok = await repo.mark_live(conn, self.run_id, fence=self._fence)
                    if ok and self.live:
                        await repo.notify(
                            conn, repo.EVENTS_CHANNEL, f"{self.run_id}{repo.EVENTS_ONLY}"
                        )
            except (psycopg.Error, OSError):
                # Keep them for the next attempt (or the final transaction).
                self._buffer[:0] = events
                self._buffered += sum(len(e[2]) for e in events)
                self._has_data.set()
                raise
            if not ok:
                self.lost = True
                log.warning("run %s: lease lost while writing events", self.run_id)
                if self._on_lost is not None:
                    self._on_lost()
                return
            if announce:
                self._announce = False
            if self.live:
                self._hub.wake_events(str(self.run_id))

    async def _pause(self, seconds: float) -> bool:
        """Sleep unless asked to stop; True when the writer is closing."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        return self._closing.is_set()

    async def _flush_loop(self) -> None:
        while not self._closing.is_set():
            await self._has_data.wait()
            if await self._pause(FLUSH_INTERVAL_S):
                return
            try:
                await self.flush()
            except (psycopg.Error, OSError) as exc:
                log.warning("run %s: could not write events (%s); retrying", self.run_id, exc)
                if await self._pause(0.5):
                    return


async def tail(
    pool: DbPool,
    hub: EventHub,
    run_id: uuid.UUID,
    *,
    after_seq: int | None = -1,
    events: Collection[str] | None = None,
) -> AsyncGenerator[repo.EventRow | None]:
    """Yield a run's stored events after `after_seq`, following it until it has ended.

    Yields `None` whenever it waited a poll interval without news, so the caller can send
    heartbeats. Ends once the run is terminal and every event is delivered, or when the run
    no longer exists (rolled back or its thread deleted).

    Args:
        pool: the connection pool.
        hub: wakes the tailer on NOTIFY.
        run_id: the run to follow.
        after_seq: only events with a larger sequence number (-1: all; None: from the live
            edge, known once every event the run emitted so far is stored; a deferred run's
            worker must have been asked to store them, `join_point`).
        events: only these event names (the part before `|`); None for all.
    """
    key = str(run_id)
    waiter = hub.subscribe(key)
    last = after_seq
    away = False  # the database was unreachable (logged once)
    try:
        while True:
            waiter.clear()
            try:
                async with pool.connection() as conn:
                    if last is None:
                        last = await repo.live_edge(conn, run_id)
                    status, rows = (
                        ("running", [])  # its worker has not stored its buffer yet
                        if last is None
                        else await repo.tail_events(conn, run_id, last, TAIL_BATCH)
                    )
            except (psycopg.OperationalError, OSError) as exc:
                away = await _wait_out_outage(exc, run_id, "its events", logged=away)
                yield None  # a heartbeat: the stream stays open while the database is away
                continue
            for row in rows:
                last = row.seq
                if events is None or row.event.split("|", 1)[0] in events:
                    yield row
            if len(rows) == TAIL_BATCH:
                continue
            if status is None or status in TERMINAL_STATUSES:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), timeout=hub.poll_interval)
            if not waiter.is_set():
                yield None
    finally:
        hub.unsubscribe(key, waiter)


async def join_point(pool: DbPool, run_id: uuid.UUID, last_event_id: str | None) -> int | None:
    """Where a joining stream starts: after `Last-Event-ID`, else at the live edge.

    Either way the run's worker is asked to store its events as they come, if it defers
    them. None: the live edge is not known yet (its worker has not stored its buffer);
    `tail(after_seq=None)` waits for it.

    Raises:
        ValueError: `last_event_id` is not an integer.
    """
    after = None
    if last_event_id is not None and last_event_id.strip():
        after = max(-1, int(last_event_id.strip()))
    async with pool.connection() as conn:
        await repo.want_live(conn, run_id)
        return after if after is not None else await repo.live_edge(conn, run_id)


async def wait_until_done(
    pool: DbPool, hub: EventHub, run_id: uuid.UUID
) -> AsyncGenerator[tuple[str, str | None] | None]:
    """Yield `None` on every idle poll interval, then `(status, output)` once the run ended.

    `output` is the JSON text the run's end stored (None: it ended before it started).
    Yields `("deleted", None)` if the run disappears (rolled back) before ending. The run is
    read once after subscribing (it may have ended before), then only when a notification
    says its status may have changed without saying how, or every `end_poll_interval`: the
    end's notification carries the output, when it fits.
    """
    key = str(run_id)
    waiter: RunWaiter = hub.subscribe(key, ends_only=True)
    away = False  # the database was unreachable (logged once)
    read, read_at = True, 0.0
    try:
        while True:
            if waiter.end is not None:
                yield waiter.end
                return
            if read:
                waiter.clear()
                read_at = time.monotonic()
                try:
                    async with pool.connection() as conn:
                        found = await repo.get_output(conn, run_id)
                except (psycopg.OperationalError, OSError) as exc:
                    away = await _wait_out_outage(exc, run_id, "its status", logged=away)
                    yield None
                    continue
                if found is None:
                    yield ("deleted", None)
                    return
                if found[0] in TERMINAL_STATUSES:
                    yield found
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), timeout=hub.poll_interval)
            if waiter.is_set():
                read = True  # unless the notification said how it ended (checked first)
            else:
                yield None
                read = time.monotonic() - read_at >= hub.end_poll_interval
    finally:
        hub.unsubscribe(key, waiter)


async def _wait_out_outage(exc: Exception, run_id: object, what: str, *, logged: bool) -> bool:
    """Re-raise `exc` unless the database is away; else log once and pause a poll interval.

    Returns True (the outage is logged); the caller yields a heartbeat and reads again.
    """
    if not connection_lost(exc):
        raise exc
    if not logged:
        log.warning("run %s: cannot read %s (%s); waiting", run_id, what, exc)
    await asyncio.sleep(DEGRADED_POLL_INTERVAL_S)
    return True


__all__ = [
    "DEFERRED_MAX_BYTES",
    "EventHub",
    "EventWriter",
    "events_mode_for",
    "join_point",
    "tail",
    "wait_until_done",
]
