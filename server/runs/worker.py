"""`RunWorker`: claims pending runs from Postgres and executes them, in every server process.

- Claiming: `UPDATE … WHERE run_id = (SELECT … FOR UPDATE SKIP LOCKED)`, oldest first, never a
  thread that already has a running run (the partial unique index settles any race).
- Leases: a claimed run holds `lease_expires_at = now() + lease`; the worker renews the
  leases of the runs it is still executing every `lease / 3`. A run whose lease could not be
  renewed is cancelled locally; any replica's reaper puts a run whose lease expired back to
  `pending` (`attempt + 1`) and it continues from the thread's last checkpoint.
- Liveness: a lease is renewed only while its run's task is alive and, once the graph is
  done, only for `lease` more seconds: a run stuck recording its end (a dead connection, a
  lock that never comes) is cancelled and its lease left to expire, so no run stays
  `running` without an executor (docs/http-service.md, "Database outages").
- Cancellation: `runs.cancel_action` plus `NOTIFY steward_run_cancel`; the renewal also picks
  the flag up, so a missed notification only delays a cancel by one renewal period. A client
  joining a deferred run's stream (`runs.events_mode = 'wanted'`, `NOTIFY steward_run_stream`)
  reaches its event writer the same two ways.
- Shutdown: stop claiming, ask running graphs to stop at their next step boundary, wait up to
  `shutdown_grace_s`, then cancel; unfinished runs go back to the queue for another replica.
- Throughput: one compiled graph serves every run; its saver (`graph.checkpointer`) has no
  instance lock on a pool, so runs checkpoint concurrently (langgraph #7259).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

import psycopg

from core.settings import Settings
from graph.runtime import Runtime
from server import threads_repo
from server.runs import repo
from server.runs.events import EventHub
from server.runs.executor import Graph, RunExecutor
from server.runs.handle import RunHandle

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """Tunables; `from_settings` reads them from the `STEWARD_RUN_*` settings."""

    slots: int = 10
    """Runs executed concurrently by one process."""
    lease_s: float = 30.0
    """A claimed run's lease; renewed every `lease_s / 3`."""
    poll_s: float = 1.0
    """Claim attempts happen at least this often even without a notification."""
    max_attempts: int = 3
    """A run whose lease expired this many times (its replica died) ends with `error`; hand-overs
    by a drain or a lost database do not count (`runs.lost_leases`)."""
    shutdown_grace_s: float = 10.0
    """How long `stop()` lets running graphs reach a step boundary before cancelling them."""
    temp_thread_grace_s: float = 60.0
    """Stateless runs' threads are deleted this long after the run ended (if not yet)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> WorkerConfig:
        """Build from the `run_*` settings (`STEWARD_RUN_SLOTS`, `STEWARD_RUN_LEASE_S`, ...)."""
        return cls(
            slots=settings.run_slots,
            lease_s=settings.run_lease_s,
            poll_s=settings.run_poll_s,
            max_attempts=settings.run_max_attempts,
            shutdown_grace_s=settings.run_shutdown_grace_s,
        )


class RunWorker:
    """Claims and executes runs for one process; `start()` in the app lifespan, `stop()` after.

    Args:
        runtime: the process runtime (pool, graph, deps, database URL).
        settings: service settings (optional `run_*` tunables; the recursion limit comes from
            `runtime.deps.settings`).
        config: explicit tunables (tests); defaults to `WorkerConfig.from_settings(settings)`.
    """

    def __init__(
        self, runtime: Runtime, settings: Any = None, *, config: WorkerConfig | None = None
    ) -> None:
        self.runtime = runtime
        self.settings = settings if settings is not None else runtime.deps.settings
        self.config = config or WorkerConfig.from_settings(self.settings)
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.hub = EventHub(runtime.database_url)
        self.running: dict[uuid.UUID, RunHandle] = {}
        self.executor = RunExecutor(
            runtime.pool,
            self.hub,
            worker_id=self.worker_id,
            recursion_limit=int(runtime.deps.settings.recursion_limit),
            running=self.running,
        )
        self.graph: Graph = runtime.graph
        self._wake = asyncio.Event()
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._last_renewal = time.monotonic()

    # -- lifecycle

    async def start(self) -> None:
        """Listen for notifications and start claiming runs."""
        self.hub.on_runs(self._wake.set)
        self.hub.on_cancel(self._on_cancel)
        self.hub.on_stream(self._on_stream)
        await self.hub.start()
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="steward-run-claims"),
            asyncio.create_task(self._lease_loop(), name="steward-run-leases"),
            asyncio.create_task(self._maintenance_loop(), name="steward-run-maintenance"),
        ]
        log.info(
            "run worker %s started (%d slots, lease %.0fs)",
            self.worker_id,
            self.config.slots,
            self.config.lease_s,
        )

    def stop_claiming(self) -> None:
        """Claim no new runs from now on (drain); running ones go on until `stop()`."""
        self._stopping = True
        self._wake.set()

    async def stop(self) -> None:
        """Stop claiming; let running graphs drain, then cancel and requeue what is left."""
        self._stopping = True
        self._wake.set()
        claim_task = self._tasks[0] if self._tasks else None
        if claim_task is not None:
            claim_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claim_task
        handles = list(self.running.values())
        for handle in handles:
            handle.drain()
        tasks = [h.task for h in handles if h.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=self.config.shutdown_grace_s)
            for handle in handles:
                if handle.task in pending:
                    handle.cancel("shutdown")
            if pending:
                await asyncio.wait(pending, timeout=10.0)
        for task in self._tasks[1:]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.hub.stop()
        log.info("run worker %s stopped", self.worker_id)

    # -- claiming

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                while len(self.running) < self.config.slots and not self._stopping:
                    run = await self._claim()
                    if run is None:
                        break
                    self._spawn(run)
                    if not run.get("more_pending", True):
                        break  # nothing else was due; a new run's notification wakes us
            except (psycopg.Error, OSError) as exc:
                log.warning("run worker: claim failed (%s)", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.config.poll_s)

    async def _claim(self) -> dict[str, Any] | None:
        try:
            async with self.runtime.pool.connection() as conn:
                row = await repo.claim_next(conn, self.worker_id, self.config.lease_s)
        except psycopg.errors.UniqueViolation:
            return None  # another replica started a run on that thread first
        return dict(row) if row is not None else None

    def _spawn(self, run: dict[str, Any]) -> None:
        handle = RunHandle(
            run_id=run["run_id"],
            thread_id=run["thread_id"],
            attempt=int(run["attempt"]),
            lease_until=time.monotonic() + self.config.lease_s,
        )
        handle.task = asyncio.create_task(
            self.executor.execute(run, self.graph, handle), name=f"run-{run['run_id']}"
        )
        self.running[handle.run_id] = handle
        handle.task.add_done_callback(lambda _t: self._done(handle))
        log.info("run %s: claimed (attempt %s)", run["run_id"], run["attempt"])

    def _done(self, handle: RunHandle) -> None:
        if self.running.get(handle.run_id) is handle:
            del self.running[handle.run_id]
        task = handle.task
        if task is not None and not task.cancelled() and task.exception() is not None:
            log.error("run %s: executor crashed", handle.run_id, exc_info=task.exception())
        self._wake.set()

    def _on_cancel(self, run_id: str, action: str) -> None:
        with contextlib.suppress(ValueError):
            handle = self.running.get(uuid.UUID(run_id))
            if handle is not None:
                handle.cancel(action)

    def _on_stream(self, run_id: str) -> None:
        with contextlib.suppress(ValueError):
            handle = self.running.get(uuid.UUID(run_id))
            if handle is not None:
                handle.want_live()

    # -- leases

    async def _lease_loop(self) -> None:
        period = self.config.lease_s / 3
        while True:
            await asyncio.sleep(period)
            await self.renew_leases()

    def _live_handles(self) -> dict[uuid.UUID, RunHandle]:
        """The runs whose leases should be renewed: those still executing, and not stuck.

        A handle whose task is gone is forgotten; one that has been finishing for longer than
        a lease is cancelled (it is stuck on the database) and no longer renewed, so its
        lease expires and a reaper requeues the run.
        """
        live: dict[uuid.UUID, RunHandle] = {}
        now = time.monotonic()
        for run_id, handle in list(self.running.items()):
            if not handle.executing:
                if self.running.get(run_id) is handle:
                    del self.running[run_id]
                continue
            since = handle.finishing_since
            if since is not None and now - since > self.config.lease_s:
                log.error(
                    "run %s: finishing for %.0fs; lease no longer renewed", run_id, now - since
                )
                handle.cancel("stalled", force=True)
                continue
            live[run_id] = handle
        return live

    async def renew_leases(self) -> None:
        """Renew this worker's leases; cancel runs it lost or that were asked to cancel."""
        handles = self._live_handles()
        if not handles:
            self._last_renewal = time.monotonic()
            return
        sent_at = time.monotonic()
        try:
            async with self.runtime.pool.connection() as conn:
                rows = await repo.renew_leases(
                    conn, self.worker_id, list(handles), self.config.lease_s
                )
        except (psycopg.Error, OSError) as exc:
            log.warning("run worker: lease renewal failed (%s)", exc)
            if time.monotonic() - self._last_renewal > self.config.lease_s * 0.8:
                for handle in handles.values():  # others may take these runs over soon
                    handle.cancel("lease_lost")
            return
        self._last_renewal = time.monotonic()
        held = {r["run_id"]: r for r in rows if int(r["attempt"]) == handles[r["run_id"]].attempt}
        for run_id, handle in handles.items():
            row = held.get(run_id)
            if row is not None:
                handle.lease_until = sent_at + self.config.lease_s
            if row is None:
                if not handle.finishing:
                    handle.cancel("lease_lost")
            elif row["cancel_action"]:
                handle.cancel(row["cancel_action"])
            if row is not None and row["events_mode"] == "wanted":
                handle.want_live()  # its STREAM_CHANNEL notification did not reach us

    # -- housekeeping

    async def _maintenance_loop(self) -> None:
        period = max(1.0, min(5.0, self.config.lease_s / 3))
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(period)
            try:
                await self.reap_expired()
                if time.monotonic() - last_sweep >= 30.0:
                    last_sweep = time.monotonic()
                    await self._sweep()
            except (psycopg.Error, OSError) as exc:
                log.warning("run worker: maintenance failed (%s)", exc)

    async def reap_expired(self) -> int:
        """Requeue runs whose lease expired (their replica died); returns how many."""
        async with self.runtime.pool.connection() as conn, conn.transaction():
            requeued, failed = await repo.requeue_expired(conn, self.config.max_attempts)
            for row in failed:
                await threads_repo.settle_thread_status(conn, row["thread_id"], "error")
                await repo.notify(conn, repo.EVENTS_CHANNEL, str(row["run_id"]))
            if requeued or failed:
                await repo.notify(conn, repo.RUNS_CHANNEL)
        for row in requeued:
            log.warning(
                "run %s: lease expired; requeued as attempt %s", row["run_id"], row["attempt"]
            )
        for row in failed:
            log.error("run %s: lease expired %s times; failed", row["run_id"], row["attempt"])
        return len(requeued) + len(failed)

    async def _sweep(self) -> None:
        async with self.runtime.pool.connection() as conn:
            stale = await repo.expired_temporary_threads(conn, self.config.temp_thread_grace_s)
        for thread_id in stale:
            await self.runtime.checkpointer.adelete_thread(thread_id)
            async with self.runtime.pool.connection() as conn:
                await threads_repo.delete_thread_row(conn, uuid.UUID(thread_id))
        async with self.runtime.pool.connection() as conn:
            await repo.purge_events(conn, plain_after_s=300.0, resumable_after_s=3600.0)


__all__ = ["RunWorker", "WorkerConfig"]
