"""Cancelling runs: a queued one at once, a running one by asking the replica that runs it."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from core.errors import NotFound, Unprocessable
from core.identity import Principal
from graph.runtime import Runtime
from server import threads_repo
from server.approvals import reopen_unstarted_resume
from server.runs import repo
from server.runs.events import EventHub, wait_until_done
from server.runs.models import ACTIVE_STATUSES, CancelAction
from server.runs.queries import RunQueries, parse_uuid, thread_config


class RunCanceller:
    """Cancels runs the calling principal may see, on whichever replica executes them.

    Args:
        runtime: the process runtime (pool, graph).
        hub: wakes `cancel(wait=True)` when the run ended.
    """

    def __init__(self, runtime: Runtime, hub: EventHub) -> None:
        self.runtime = runtime
        self.hub = hub
        self.pool = runtime.pool
        self.graph = runtime.graph
        self.queries = RunQueries(runtime)

    async def cancel(
        self,
        principal: Principal,
        thread_id: str | uuid.UUID,
        run_id: str | uuid.UUID,
        *,
        action: CancelAction = "interrupt",
        wait: bool = False,
    ) -> None:
        """Cancel a pending or running run, on whichever replica executes it.

        `interrupt` stops it and keeps what it checkpointed; `rollback` also deletes the run
        and the checkpoints it wrote. With `wait`, return once the run has ended.

        Raises:
            NotFound: the run is missing, invisible, or already ended.
        """
        row = await self.queries.get_row(principal, thread_id, run_id)
        if row["status"] not in ACTIVE_STATUSES:
            # As the LangGraph server answers: no active run by that id (404).
            raise NotFound(f"run {run_id} is not active: it already ended ({row['status']})")
        await self._cancel_rows([row], action)
        if wait:
            async for item in wait_until_done(self.pool, self.hub, row["run_id"]):
                if item is not None:
                    break

    async def cancel_many(
        self,
        principal: Principal,
        *,
        thread_id: str | None,
        run_ids: Collection[str] | None,
        status: str | None,
        action: CancelAction = "interrupt",
    ) -> None:
        """Cancel runs by id, or a thread's pending / running / all active runs.

        Raises:
            Unprocessable: neither `thread_id` nor `run_ids` given.
            NotFound: a thread or run is missing or invisible.
        """
        if not thread_id and not run_ids:
            raise Unprocessable("give thread_id or run_ids")
        wanted = {"pending": {"pending"}, "running": {"running"}}.get(
            status or "all", set(ACTIVE_STATUSES)
        )
        rows: list[dict[str, Any]] = []
        if run_ids:
            if not thread_id:
                raise Unprocessable("run_ids must come with their thread_id")
            for rid in run_ids:
                rows.append(await self.queries.get_row(principal, thread_id, rid))
        else:
            assert thread_id is not None
            tid = parse_uuid(thread_id, "thread")
            await self.queries.require_visible(principal, tid)
            async with self.pool.connection() as conn:
                rows = [dict(r) for r in await repo.active_runs(conn, tid)]
        await self._cancel_rows([r for r in rows if r["status"] in wanted], action)

    async def cancel_by_id(self, run_id: uuid.UUID, action: str = "interrupt") -> None:
        """Cancel a run the caller already proved it may see (client disconnects)."""
        async with self.pool.connection() as conn:
            row = await repo.get_run(conn, run_id)
        if row is not None and row["status"] in ACTIVE_STATUSES:
            await self._cancel_rows([dict(row)], action)

    async def _cancel_rows(self, rows: list[dict[str, Any]], action: str) -> None:
        # A queued run wrote nothing: if it goes away, its thread's status comes from the
        # thread's checkpoint (read first, so it commits together with the cancel).
        settled: dict[uuid.UUID, str] = {}
        for thread_id in {r["thread_id"] for r in rows if r["status"] == "pending"}:
            state = await self.graph.aget_state(thread_config(thread_id))
            settled[thread_id] = "interrupted" if state.interrupts else "idle"
        async with self.pool.connection() as conn, conn.transaction():
            for thread_id in sorted({r["thread_id"] for r in rows}):
                await threads_repo.lock_thread(conn, thread_id)  # thread rows first, then runs
            for row in rows:
                if await repo.cancel_pending(conn, row["run_id"], action):
                    await reopen_unstarted_resume(conn, row)
                    status = settled.get(row["thread_id"])
                    if status is not None:
                        await threads_repo.settle_thread_status(conn, row["thread_id"], status)
                else:
                    await repo.request_cancel(conn, row["run_id"], action)
                await repo.notify(conn, repo.EVENTS_CHANNEL, str(row["run_id"]))
