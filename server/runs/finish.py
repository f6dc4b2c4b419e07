"""How a run ends: its final status, output, last events and thread status, in one commit.

The final run status, the run's output (what `/wait` and `/join` return), the last events and
the thread status are committed in one transaction, fenced by the lease, before anyone's
stream closes. Every run's final transaction also makes the approval queue agree with the
thread (`server.approvals.sync_pending`): waiting approval interrupts are recorded, approvals
whose interrupt no longer waits expire. A failure there fails the transaction (nothing is
swallowed): the run is not reported finished and its lease brings it back.

A rollback never erases a decision or a side effect: a resume run, or a run that executed a
refund, is cancelled as `interrupt` instead. Locks are taken in the documented order
(docs/http-service.md, "Lock order"): thread row, run row, approval rows.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from typing import Any

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot

from core.db.pool import Conn, DbPool
from core.jsonable import dumps, interrupt_json
from graph.checkpointer import StewardSaver
from server import threads_repo
from server.approvals import sync_pending
from server.runs import repo
from server.runs.conflicts import retry_conflicts
from server.runs.events import EventHub, EventWriter
from server.runs.handle import RunHandle, while_leased
from server.runs.invocation import build_config, final_output, thread_config

log = logging.getLogger(__name__)

Graph = CompiledStateGraph[Any, Any, Any, Any]


class RunFinisher:
    """Records how runs end, fenced by this worker's lease.

    Args:
        pool: the database pool.
        hub: the process's notification hub (woken once an end is committed).
        recursion_limit: the server's cap (`settings.recursion_limit`).
        running: the worker's runs executing here (for each run's lease deadline).
    """

    def __init__(
        self,
        pool: DbPool,
        hub: EventHub,
        *,
        recursion_limit: int,
        running: Mapping[uuid.UUID, RunHandle],
    ) -> None:
        self.pool = pool
        self.hub = hub
        self.recursion_limit = recursion_limit
        self.running = running

    async def failed(
        self,
        run: dict[str, Any],
        graph: Graph,
        config: RunnableConfig,
        writer: EventWriter,
        fence: tuple[str, int],
        exc: Exception,
    ) -> None:
        """End the run with `error` (the thread stays `interrupted` if an interrupt waits)."""
        error = {"error": type(exc).__name__, "message": str(exc) or type(exc).__name__}
        log.warning("run %s failed: %s: %s", run["run_id"], error["error"], error["message"])
        writer.emit("error", error)
        thread_status = "error"
        state: StateSnapshot | None = None
        try:
            state = await graph.aget_state(thread_config(config))
            if state.interrupts:
                thread_status = "interrupted"  # e.g. an invalid resume: still answerable
        except (psycopg.Error, OSError, ValueError):
            pass
        await self.finish(
            run,
            writer,
            fence,
            status="error",
            output=dumps({"__error__": error}),
            error=error,
            thread_status=thread_status,
            interrupts=[interrupt_json(i) for i in state.interrupts] if state else None,
            state=state,
        )

    async def finish(
        self,
        run: dict[str, Any],
        writer: EventWriter,
        fence: tuple[str, int],
        *,
        status: str,
        output: str,
        error: dict[str, Any] | None,
        thread_status: str,
        interrupts: list[dict[str, Any]] | None,
        state: StateSnapshot | None = None,
    ) -> None:
        """Commit the final status, the remaining events, the thread status and the queue.

        `output` is the JSON text `/wait` returns; `interrupts` are the thread's waiting
        interrupts now (None: unknown, the queue is left as it is).
        """
        await writer.close()
        run_id: uuid.UUID = run["run_id"]
        events = writer.take()

        async def commit() -> str | None:
            async for attempt in retry_conflicts(f"finishing run {run_id}"):
                with attempt:
                    return await self._commit_finish(
                        run,
                        events,
                        fence,
                        status=status,
                        output=output,
                        error=error,
                        thread_status=thread_status,
                        interrupts=interrupts,
                        state=state,
                    )
            return None  # pragma: no cover - the last attempt raises

        stored = await while_leased(self.running, run, f"recording its end ({status})", commit)
        if stored is not None:
            self.hub.wake(str(run_id), (status, stored))
            log.info("run %s: %s", run_id, status)

    async def _commit_finish(
        self,
        run: dict[str, Any],
        events: list[tuple[int, str, str]],
        fence: tuple[str, int],
        *,
        status: str,
        output: str,
        error: dict[str, Any] | None,
        thread_status: str,
        interrupts: list[dict[str, Any]] | None,
        state: StateSnapshot | None,
    ) -> str | None:
        """One transaction, locks in the documented order: thread, run, approvals.

        Returns the output as stored (what `/wait` answers), None when the run is no
        longer held by this worker. Its end is one notification: `repo.end_payload`.
        In a pipeline inside the transaction: a statement whose result is not read (the thread
        lock, the events, the notification) travels with the next one that is (about 6.5
        round trips instead of 8.5; a pipeline around the transaction would sync at BEGIN and
        COMMIT). Nothing here may read a `rowcount`: in a pipeline it is -1 until a sync.
        """
        run_id: uuid.UUID = run["run_id"]
        async with self.pool.connection() as conn, conn.transaction(), conn.pipeline():
            await threads_repo.lock_thread(conn, run["thread_id"])
            row = await repo.finish_run(
                conn,
                run_id,
                fence=fence,
                status=status,
                output=output,
                error=dumps(error) if error is not None else None,
            )
            if row is None:
                log.warning("run %s: no longer held by this worker; result dropped", run_id)
                return None
            stored: str = row["output_json"]
            await repo.insert_events(conn, run_id, events)
            await _settle(conn, row, thread_status, interrupts, state, end=(status, stored))
        return stored

    async def cancelled(
        self,
        run: dict[str, Any],
        graph: Graph,
        writer: EventWriter,
        fence: tuple[str, int],
        reason: str,
    ) -> None:
        """Finish a cancelled run according to its `cancel_action` (or give it back)."""
        if reason in ("lease_lost", "stalled"):
            log.warning(
                "run %s: %s; another attempt continues it",
                run["run_id"],
                "lease lost" if reason == "lease_lost" else "stalled while finishing",
            )
            return
        # Checkpoint writes LangGraph started may outlive the cancelled task: let them land
        # before the thread is read, rolled back or handed to another attempt. Finishing from
        # here on: a write stuck longer than a lease gets this task cancelled as stalled, and
        # the run goes back to the queue when its lease expires (`server.runs.worker`).
        if (handle := self.running.get(run["run_id"])) is not None:
            handle.start_finishing()
        if isinstance(saver := graph.checkpointer, StewardSaver):
            await saver.writes_settled(str(run["thread_id"]))
        async with self.pool.connection() as conn:
            action = await repo.cancel_action_of(conn, run["run_id"])
        config = build_config(run, self.recursion_limit)
        if action == "rollback" and await self._keeps_history(run):
            log.warning(
                "run %s: answered an approval or executed an action; cancelled as "
                "interrupt instead of rolled back (its audit stays visible)",
                run["run_id"],
            )
            action = "interrupt"
        if action == "rollback":
            await self._rollback(run, graph, writer, fence, config)
        elif action == "interrupt":
            state = await graph.aget_state(thread_config(config))
            interrupts = [interrupt_json(i) for i in state.interrupts]
            await self.finish(
                run,
                writer,
                fence,
                status="interrupted",
                output=final_output(state, interrupts),
                error=None,
                # As the LangGraph server: a run stopped by `interrupt` leaves its thread
                # `interrupted`, and `input: null` continues it from where it stopped.
                thread_status="interrupted",
                interrupts=interrupts,
                state=state,
            )
        else:
            await self.release(run, writer, fence)

    async def _keeps_history(self, run: dict[str, Any]) -> bool:
        """A resume or a run with side effects is never rolled back."""
        kwargs = run.get("kwargs") or {}
        if (kwargs.get("command") or {}).get("resume") is not None:
            return True
        async with self.pool.connection() as conn:
            return await repo.run_side_effects(conn, run["run_id"]) > 0

    async def _rollback(
        self,
        run: dict[str, Any],
        graph: Graph,
        writer: EventWriter,
        fence: tuple[str, int],
        config: RunnableConfig,
    ) -> None:
        await writer.close()
        writer.take()
        run_id: uuid.UUID = run["run_id"]
        thread_id: uuid.UUID = run["thread_id"]
        is_resume = ((run.get("kwargs") or {}).get("command") or {}).get("resume") is not None
        # The thread's status once this run's checkpoints are gone: that of the newest
        # checkpoint another run wrote (read first, so everything commits together).
        async with self.pool.connection() as conn:
            previous = await repo.latest_checkpoint_not_of(conn, thread_id, run_id)
        waiting: list[dict[str, Any]] = []
        before_state: StateSnapshot | None = None
        if previous is not None:
            before = RunnableConfig(
                configurable={
                    "thread_id": str(thread_id),
                    "checkpoint_ns": "",
                    "checkpoint_id": previous,
                }
            )
            before_state = await graph.aget_state(before)
            waiting = [interrupt_json(i) for i in before_state.interrupts]
        async with self.pool.connection() as conn, conn.transaction():
            await threads_repo.lock_thread(conn, thread_id)
            held = await repo.held_run(conn, run_id, fence=fence)
            if held is None:
                return
            await repo.delete_run_checkpoints(conn, thread_id, run_id, drop_resume=is_resume)
            await repo.delete_run(conn, run_id)
            await _settle(conn, held, "interrupted" if waiting else "idle", waiting, before_state)
        self.hub.wake(str(run_id))
        log.info("run %s: rolled back", run_id)

    async def release(
        self, run: dict[str, Any], writer: EventWriter, fence: tuple[str, int]
    ) -> None:
        """Give the run back to the queue (shutdown, lost database).

        Another attempt, here or on another replica, continues it from its last checkpoint.
        """
        await writer.close()
        run_id: uuid.UUID = run["run_id"]
        events = writer.take()

        async def give_back() -> bool:
            async with self.pool.connection() as conn, conn.transaction():
                await repo.insert_events(conn, run_id, events, fence=fence)
                released = await repo.release_run(conn, run_id, fence=fence)
                if released:
                    await repo.notify(conn, repo.RUNS_CHANNEL)
            return released

        if await while_leased(self.running, run, "giving it back to the queue", give_back):
            log.info("run %s: released for another worker", run_id)
        else:
            log.warning("run %s: no longer held by this worker; not released", run_id)


async def _settle(
    conn: Conn,
    run: Mapping[str, Any],
    thread_status: str,
    interrupts: list[dict[str, Any]] | None,
    state: StateSnapshot | None,
    *,
    end: tuple[str, str] | None = None,
) -> None:
    """After a run's row changed: the thread's status, the approval queue, the notifications.

    Inside the run's final transaction, with the thread row locked. `interrupts` None leaves
    the queue as it is (the waiting interrupts are unknown). `end`: the run ended with
    `(status, output JSON)`, told in one notification that also wakes the claim loops.
    """
    thread = await threads_repo.settle_thread_status(conn, run["thread_id"], thread_status)
    if interrupts is not None:
        await sync_pending(
            conn, run=dict(run), thread=dict(thread or {}), interrupts=interrupts, state=state
        )
    if end is not None:
        await repo.notify(conn, repo.EVENTS_CHANNEL, repo.end_payload(run["run_id"], *end))
        return
    await repo.notify(conn, repo.EVENTS_CHANNEL, str(run["run_id"]))
    await repo.notify(conn, repo.RUNS_CHANNEL)
