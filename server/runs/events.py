"""Run events: the batched writer (worker side), LISTEN/NOTIFY, and tailing (API side).

Every replica streams a run by tailing its `run_events` rows, whichever replica executes it.
The worker appends events in small batches and `NOTIFY steward_run_events, '<run_id>'`; one
LISTEN connection per process wakes the local tailers, and each tailer also polls once a
second as a safety net (a dropped LISTEN connection only adds latency, never loses events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncGenerator, Callable, Collection
from typing import Any

import psycopg
from psycopg import AsyncConnection

from core.db.outage import connection_lost
from core.db.pool import DbPool
from core.jsonable import dumps
from server.runs import repo
from server.runs.models import TERMINAL_STATUSES

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.02
"""How long the writer gathers events before one INSERT (and one NOTIFY)."""
POLL_INTERVAL_S = 1.0
"""Tailers re-read the run at least this often even without a notification."""
DEGRADED_POLL_INTERVAL_S = 0.25
"""Poll interval while the LISTEN connection is down."""
TAIL_BATCH = 500


class EventHub:
    """One LISTEN connection per process, fanning notifications out to local waiters."""

    def __init__(self, database_url: str | None) -> None:
        self._url = database_url
        self._waiters: dict[str, set[asyncio.Event]] = {}
        """Per run, the waiters woken by any news (stream tailers)."""
        self._end_waiters: dict[str, set[asyncio.Event]] = {}
        """Per run, the waiters woken only when its status may have changed (`/wait`)."""
        self._runs_callbacks: list[Callable[[], None]] = []
        self._cancel_callbacks: list[Callable[[str, str], None]] = []
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self.listening = False

    # -- lifecycle

    async def start(self) -> None:
        """Start listening (returns once the first connection is up, or after 5 s)."""
        if self._task is not None or not self._url:
            return
        self._task = asyncio.create_task(self._listen_forever(), name="steward-run-events")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout=5.0)

    async def stop(self) -> None:
        """Stop listening and wake every waiter."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.listening = False
        self._wake_all()

    # -- subscriptions

    def on_runs(self, callback: Callable[[], None]) -> None:
        """Call `callback()` when a run may have become claimable."""
        self._runs_callbacks.append(callback)

    def on_cancel(self, callback: Callable[[str, str], None]) -> None:
        """Call `callback(run_id, action)` when a run's cancellation is requested."""
        self._cancel_callbacks.append(callback)

    def subscribe(self, run_id: str, *, ends_only: bool = False) -> asyncio.Event:
        """Return an event set whenever run `run_id` has news; `unsubscribe` it after use.

        Args:
            run_id: the run.
            ends_only: set only when the run's status may have changed, not on new events.
        """
        event = asyncio.Event()
        (self._end_waiters if ends_only else self._waiters).setdefault(run_id, set()).add(event)
        return event

    def unsubscribe(self, run_id: str, event: asyncio.Event) -> None:
        """Forget a waiter returned by `subscribe`."""
        for table in (self._waiters, self._end_waiters):
            waiters = table.get(run_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del table[run_id]

    def wake(self, run_id: str) -> None:
        """Wake every local waiter of one run: its status may have changed."""
        self.wake_events(run_id)
        for event in self._end_waiters.get(run_id, ()):
            event.set()

    def wake_events(self, run_id: str) -> None:
        """Wake the local stream tailers of one run: it has new events."""
        for event in self._waiters.get(run_id, ()):
            event.set()

    @property
    def poll_interval(self) -> float:
        """How often tailers poll: slower while notifications are flowing."""
        return POLL_INTERVAL_S if self.listening else DEGRADED_POLL_INTERVAL_S

    def _wake_all(self) -> None:
        for table in (self._waiters, self._end_waiters):
            for waiters in table.values():
                for event in waiters:
                    event.set()

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == repo.EVENTS_CHANNEL:
            if payload.endswith(repo.EVENTS_ONLY):
                self.wake_events(payload.removesuffix(repo.EVENTS_ONLY))
            else:
                self.wake(payload)
        elif channel == repo.RUNS_CHANNEL:
            for callback in self._runs_callbacks:
                callback()
        elif channel == repo.CANCEL_CHANNEL:
            run_id, _, action = payload.partition(":")
            for cancel in self._cancel_callbacks:
                cancel(run_id, action or "interrupt")

    async def _listen_forever(self) -> None:
        delay = 0.5
        assert self._url is not None
        while True:
            try:
                async with await AsyncConnection.connect(self._url, autocommit=True) as conn:
                    for channel in (repo.RUNS_CHANNEL, repo.EVENTS_CHANNEL, repo.CANCEL_CHANNEL):
                        await conn.execute(f"LISTEN {channel}")
                    self.listening = True
                    self._connected.set()
                    delay = 0.5
                    # Anything may have happened while we were not listening.
                    self._wake_all()
                    for callback in self._runs_callbacks:
                        callback()
                    while True:
                        async for note in conn.notifies(timeout=30.0):
                            self._dispatch(note.channel, note.payload)
                        await conn.execute("SELECT 1")  # detect a dead connection
            except asyncio.CancelledError:
                raise
            except (psycopg.Error, OSError) as exc:
                if self.listening:
                    log.warning("run events: LISTEN connection lost (%s); retrying", exc)
                self.listening = False
                self._wake_all()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)


class EventWriter:
    """Buffers one run's events and appends them to `run_events` in small batches.

    Writes are fenced by `(worker_id, attempt)`: once another replica took the run over, the
    writer stops (`lost` is set and `on_lost` is called).
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
    ) -> None:
        self._pool = pool
        self._hub = hub
        self.run_id = run_id
        self._fence = fence
        self._seq = next_seq
        self._buffer: list[tuple[int, str, str]] = []
        self._has_data = asyncio.Event()
        self._on_lost = on_lost
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._closing = asyncio.Event()
        self.lost = False

    def start(self) -> None:
        """Start the background flusher."""
        self._task = asyncio.create_task(self._flush_loop(), name=f"run-events-{self.run_id}")

    def emit(self, event: str, data: Any) -> None:
        """Queue one event (serialized now, so later mutation of `data` cannot leak in)."""
        self._buffer.append((self._seq, event, dumps(data)))
        self._seq += 1
        self._has_data.set()

    def emit_json(self, event: str, data: str) -> None:
        """Queue one event whose data is already JSON (events rebuilt from checkpoints)."""
        self._buffer.append((self._seq, event, data))
        self._seq += 1
        self._has_data.set()

    def take(self) -> list[tuple[int, str, str]]:
        """Remove and return the unflushed events (to write them in the final transaction)."""
        events, self._buffer = self._buffer, []
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
        """Append the buffered events now."""
        async with self._lock:
            events = self.take()
            if not events or self.lost:
                return
            try:
                async with self._pool.connection() as conn, conn.transaction():
                    ok = await repo.insert_events(conn, self.run_id, events, fence=self._fence)
                    if ok:
                        await repo.notify(
                            conn, repo.EVENTS_CHANNEL, f"{self.run_id}{repo.EVENTS_ONLY}"
                        )
            except (psycopg.Error, OSError):
                # Keep them for the next attempt (or the final transaction).
                self._buffer[:0] = events
                self._has_data.set()
                raise
            if not ok:
                self.lost = True
                log.warning("run %s: lease lost while writing events", self.run_id)
                if self._on_lost is not None:
                    self._on_lost()
                return
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
    after_seq: int = -1,
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
        after_seq: only events with a larger sequence number (-1: all).
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
                    status, rows = await repo.tail_events(conn, run_id, last, TAIL_BATCH)
            except (psycopg.OperationalError, OSError) as exc:
                if not connection_lost(exc):
                    raise
                if not away:
                    log.warning("run %s: cannot read its events (%s); waiting", run_id, exc)
                away = True
                await asyncio.sleep(DEGRADED_POLL_INTERVAL_S)
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


async def wait_until_done(
    pool: DbPool, hub: EventHub, run_id: uuid.UUID
) -> AsyncGenerator[tuple[str, str | None] | None]:
    """Yield `None` on every idle poll interval, then `(status, output)` once the run ended.

    `output` is the JSON text the run's end stored (None: it ended before it started).
    Yields `("deleted", None)` if the run disappears (rolled back) before ending. The run's
    row is read again only when its status may have changed, not on every batch of events.
    """
    key = str(run_id)
    waiter = hub.subscribe(key, ends_only=True)
    away = False  # the database was unreachable (logged once)
    try:
        while True:
            waiter.clear()
            try:
                async with pool.connection() as conn:
                    found = await repo.get_output(conn, run_id)
            except (psycopg.OperationalError, OSError) as exc:
                if not connection_lost(exc):
                    raise
                if not away:
                    log.warning("run %s: cannot read its status (%s); waiting", run_id, exc)
                away = True
                await asyncio.sleep(DEGRADED_POLL_INTERVAL_S)
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
            if not waiter.is_set():
                yield None
    finally:
        hub.unsubscribe(key, waiter)


__all__ = [
    "EventHub",
    "EventWriter",
    "tail",
    "wait_until_done",
]
