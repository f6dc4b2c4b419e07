"""`EventHub`: one LISTEN connection per process, fanning notifications out to local waiters.

Channels (`server.runs.repo.channels`): `steward_runs` wakes the claim loop, `steward_run_cancel`
and `steward_run_stream` reach the worker executing a run, and `steward_run_events` wakes the
run's followers: stream tailers on new events, and both tailers and `/wait` waiters when the
run's status may have changed. A run's end carries its status and, when it fits, its output,
so a waiter answers without reading the run again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import psycopg
from psycopg import AsyncConnection

from server.runs import repo

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 1.0
"""Tailers re-read the run at least this often even without a notification."""
DEGRADED_POLL_INTERVAL_S = 0.25
"""Poll interval while the LISTEN connection is down."""
END_POLL_INTERVAL_S = 15.0
"""Waiters on a run's end re-read it this often while notifications flow (a safety net:
every end is notified, and a LISTEN connection that comes back wakes every waiter)."""


class RunWaiter(asyncio.Event):
    """Set when a run has news; `end` is `(status, output JSON)` once a notification said so."""

    def __init__(self) -> None:
        super().__init__()
        self.end: tuple[str, str] | None = None


class EventHub:
    """One LISTEN connection per process, fanning notifications out to local waiters."""

    def __init__(self, database_url: str | None) -> None:
        self._url = database_url
        self._waiters: dict[str, set[RunWaiter]] = {}
        """Per run, the waiters woken by any news (stream tailers)."""
        self._end_waiters: dict[str, set[RunWaiter]] = {}
        """Per run, the waiters woken only when its status may have changed (`/wait`)."""
        self._runs_callbacks: list[Callable[[], None]] = []
        self._cancel_callbacks: list[Callable[[str, str], None]] = []
        self._stream_callbacks: list[Callable[[str], None]] = []
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

    def on_stream(self, callback: Callable[[str], None]) -> None:
        """Call `callback(run_id)` when a client joined the stream of a deferred run."""
        self._stream_callbacks.append(callback)

    def subscribe(self, run_id: str, *, ends_only: bool = False) -> RunWaiter:
        """Return a waiter set whenever run `run_id` has news; `unsubscribe` it after use.

        Args:
            run_id: the run.
            ends_only: set only when the run's status may have changed, not on new events.
        """
        waiter = RunWaiter()
        (self._end_waiters if ends_only else self._waiters).setdefault(run_id, set()).add(waiter)
        return waiter

    def unsubscribe(self, run_id: str, waiter: RunWaiter) -> None:
        """Forget a waiter returned by `subscribe`."""
        for table in (self._waiters, self._end_waiters):
            waiters = table.get(run_id)
            if waiters is not None:
                waiters.discard(waiter)
                if not waiters:
                    del table[run_id]

    def wake(self, run_id: str, end: tuple[str, str] | None = None) -> None:
        """Wake every local waiter of one run: its status may have changed.

        `end`: the run ended with `(status, output JSON)`; its waiters need not read it.
        """
        self.wake_events(run_id)
        for waiter in self._end_waiters.get(run_id, ()):
            if end is not None:
                waiter.end = end
            waiter.set()

    def wake_events(self, run_id: str) -> None:
        """Wake the local stream tailers of one run: it has new events."""
        for waiter in self._waiters.get(run_id, ()):
            waiter.set()

    @property
    def poll_interval(self) -> float:
        """How often tailers poll: slower while notifications are flowing."""
        return POLL_INTERVAL_S if self.listening else DEGRADED_POLL_INTERVAL_S

    @property
    def end_poll_interval(self) -> float:
        """How often waiters on a run's end re-read it without a notification."""
        return END_POLL_INTERVAL_S if self.listening else DEGRADED_POLL_INTERVAL_S

    def _wake_all(self) -> None:
        for table in (self._waiters, self._end_waiters):
            for waiters in table.values():
                for waiter in waiters:
                    waiter.set()

    def _dispatch(self, channel: str, payload: str) -> None:
        if channel == repo.EVENTS_CHANNEL:
            end = repo.parse_end(payload)
            if end is not None:
                run_id, status, output = end
                self.wake(run_id, (status, output) if output is not None else None)
                for callback in self._runs_callbacks:  # its thread may run the next one
                    callback()
            elif payload.endswith(repo.EVENTS_ONLY):
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
        elif channel == repo.STREAM_CHANNEL:
            for stream in self._stream_callbacks:
                stream(payload)

    async def _listen_forever(self) -> None:
        delay = 0.5
        assert self._url is not None
        channels = (
            repo.RUNS_CHANNEL,
            repo.EVENTS_CHANNEL,
            repo.CANCEL_CHANNEL,
            repo.STREAM_CHANNEL,
        )
        while True:
            try:
                async with await AsyncConnection.connect(self._url, autocommit=True) as conn:
                    for channel in channels:
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


__all__ = ["END_POLL_INTERVAL_S", "POLL_INTERVAL_S", "EventHub", "RunWaiter"]
