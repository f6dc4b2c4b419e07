"""Execute one claimed run through the graph, from its plan to the call that records its end.

A run taken over after its replica died continues from the thread's last checkpoint
(`astream(None)`) when that checkpoint was written by this run. What the graph gets is built
in `server.runs.invocation`, streamed by `server.runs.streaming`, and the end is recorded by
`server.runs.finish`; the lease and its retries are `server.runs.handle`'s.

A resume is bound to one interrupt when it is created (`server.decisions`, which also decides
who may answer it); when it starts, that interrupt must still wait, or the run fails with
`ResumeConflict` and its approval expires.

Losing the database (docs/http-service.md, "Database outages") is not a run error: a run
whose graph failed because Postgres was unreachable (`psycopg.OperationalError`, which
includes `PoolTimeout` and `AdminShutdown`, or an `OSError`) goes back to the queue and
continues from its last checkpoint as its next attempt.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphDrained
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import StateSnapshot

from core.db.outage import lost_database
from core.db.pool import DbPool
from core.errors import StewardError
from core.jsonable import interrupt_json
from graph.observer import instrument_run_config
from server.decisions import expire_approval
from server.runs import repo
from server.runs.events import EventHub, EventWriter
from server.runs.finish import RunFinisher
from server.runs.handle import (
    COOPERATIVE_AFTER_SIDE_EFFECT,
    DB_ERRORS,
    RunHandle,
    while_leased,
)
from server.runs.invocation import (
    build_config,
    build_context,
    final_output,
    graph_input,
    thread_config,
)
from server.runs.recovery import missing_events, step_events
from server.runs.streaming import stream_graph

log = logging.getLogger(__name__)

Graph = CompiledStateGraph[Any, Any, Any, Any]

MAX_DB_LOSS_ATTEMPTS = 10
"""A run that lost the database this many times ends with `error` instead of requeueing."""


class ResumeConflict(StewardError):
    """The interrupt a queued resume was bound to no longer waits (the thread moved on)."""


_DONE = object()
"""`_plan`: the run had already ended (a takeover found its last checkpoint)."""
_CONTINUE = object()
"""`_plan`: continue from the run's own last checkpoint (`astream(None)`)."""


async def at_breakpoint(graph: Graph, latest: StateSnapshot, kwargs: dict[str, Any]) -> bool:
    """True when the run's own latest checkpoint is where its `interrupt_before/after` stops.

    A takeover must not continue from there: LangGraph treats `astream(None)` as a resume,
    which passes the breakpoint, so the node the client wanted to review would run.
    """
    before = kwargs.get("interrupt_before") or []
    after = kwargs.get("interrupt_after") or []
    waiting = set(latest.next)
    if before and waiting and (before == "*" or waiting & set(before)):
        return True
    if not after or latest.parent_config is None:
        return False
    if len(waiting) != len(latest.tasks):
        return False  # a task of the next step already ran: the breakpoint was passed
    parent = await graph.aget_state(latest.parent_config)
    ran = {t.name for t in parent.tasks}
    return bool(ran) and (after == "*" or bool(ran & set(after)))


class RunExecutor:
    """Runs claimed runs; one instance per worker.

    Args:
        pool: the database pool.
        hub: the process's notification hub.
        worker_id: the worker's id (with the attempt, the fence of every write).
        recursion_limit: the server's cap (`settings.recursion_limit`).
        running: the worker's runs executing here, which the worker owns (each run's lease
            deadline is read there).
    """

    def __init__(
        self,
        pool: DbPool,
        hub: EventHub,
        *,
        worker_id: str,
        recursion_limit: int,
        running: Mapping[uuid.UUID, RunHandle],
    ) -> None:
        self.pool = pool
        self.hub = hub
        self.worker_id = worker_id
        self.recursion_limit = recursion_limit
        self.running = running
        self.finisher = RunFinisher(pool, hub, recursion_limit=recursion_limit, running=running)

    async def execute(self, run: dict[str, Any], graph: Graph, handle: RunHandle) -> None:
        """Execute a claimed run to its end (or until cancelled, drained or taken over)."""
        try:
            await self._execute_held(run, graph, handle)
        except DB_ERRORS as exc:
            # Nothing could be recorded while the lease lasted: the reaper requeues the run.
            log.warning(
                "run %s: database unreachable (%s); the run goes back to the queue "
                "when its lease expires",
                run["run_id"],
                type(exc).__name__,
            )

    async def _execute_held(self, run: dict[str, Any], graph: Graph, handle: RunHandle) -> None:
        run_id: uuid.UUID = run["run_id"]
        fence = (self.worker_id, int(run["attempt"]))

        async def first_seq() -> int:
            async with self.pool.connection() as conn:
                return await repo.next_seq(conn, run_id)

        claimed_seq = run.get("next_seq")  # read with the claim (`repo.claim_next`)
        seq = (
            int(claimed_seq)
            if claimed_seq is not None
            else await while_leased(self.running, run, "reading its event log", first_seq)
        )
        writer = EventWriter(
            self.pool,
            self.hub,
            run_id,
            fence=fence,
            next_seq=seq,
            on_lost=lambda: handle.cancel("lease_lost"),
            live=run.get("events_mode") != "deferred",
        )
        handle.when_live_wanted(writer.go_live)
        writer.start()
        try:
            handle.armed = True
            if run.get("cancel_action"):
                await self.finisher.cancelled(run, graph, writer, fence, run["cancel_action"])
                return
            if handle.reason is not None:  # cancelled between the claim and arming
                await self.finisher.cancelled(run, graph, writer, fence, handle.reason)
                return
            await self._execute(run, graph, handle, writer, fence)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await self.finisher.cancelled(run, graph, writer, fence, handle.reason or "shutdown")
        finally:
            await writer.close()

    async def _execute(
        self,
        run: dict[str, Any],
        graph: Graph,
        handle: RunHandle,
        writer: EventWriter,
        fence: tuple[str, int],
    ) -> None:
        kwargs = run.get("kwargs") or {}
        config = instrument_run_config(
            build_config(run, self.recursion_limit),
            run_id=str(run["run_id"]),
            request_id=kwargs.get("request_id"),
            traceparent=kwargs.get("traceparent"),
        )
        try:
            todo, start_config = await self._plan(run, graph, config, writer)
            handle.control.durable_steps = (kwargs.get("durability") or "sync") == "sync"
            while todo is not _DONE:
                continuing = todo is _CONTINUE
                try:
                    await stream_graph(
                        graph,
                        None if continuing else todo,
                        start_config,
                        kwargs,
                        writer,
                        handle.control,
                        context=build_context(run),
                        continuing=continuing,
                    )
                    break
                except GraphDrained:
                    if not handle.control.stopped_to_checkpoint:
                        raise
                # Saved before a side effect (`graph.run_control`): go on from there.
                handle.control.continue_after_checkpoint()
                todo, start_config = _CONTINUE, config
            handle.start_finishing()
            state = await while_leased(
                self.running,
                run,
                "reading its final state",
                lambda: graph.aget_state(thread_config(config)),
            )
        except GraphDrained:
            handle.start_finishing()
            if handle.reason in COOPERATIVE_AFTER_SIDE_EFFECT:  # a cancel after a side effect
                await self.finisher.cancelled(run, graph, writer, fence, handle.reason)
            else:
                await self.finisher.release(run, writer, fence)
            return
        except Exception as exc:  # noqa: BLE001 - every failure ends the run with `error`
            handle.start_finishing()
            if lost_database(exc) and int(run["attempt"]) < MAX_DB_LOSS_ATTEMPTS:
                # Not the run's fault: it continues from its last checkpoint as the next
                # attempt (refunds are idempotent per thread and tool call).
                log.warning(
                    "run %s: lost the database (%s: %s); back to the queue",
                    run["run_id"],
                    type(exc).__name__,
                    exc,
                )
                await self.finisher.release(run, writer, fence)
                return
            await self.finisher.failed(run, graph, config, writer, fence, exc)
            return
        paused = bool(state.interrupts) or bool(state.next)
        interrupts = [interrupt_json(i) for i in state.interrupts]
        await self.finisher.finish(
            run,
            writer,
            fence,
            status="interrupted" if paused else "success",
            output=final_output(state, interrupts),
            error=None,
            thread_status="interrupted" if paused else "idle",
            interrupts=interrupts,
            state=state,
        )

    async def _plan(
        self, run: dict[str, Any], graph: Graph, config: RunnableConfig, writer: EventWriter
    ) -> tuple[Any, RunnableConfig]:
        """Decide what to feed the graph: the run's input, None (continue), or nothing.

        A later attempt first stores the events of steps an earlier attempt checkpointed
        but did not store (`server.runs.recovery`), then marks itself with a `metadata`
        event, unless the run had already finished: then its stream ends as it would have.
        """
        kwargs = run.get("kwargs") or {}
        run_id = str(run["run_id"])
        attempt = int(run["attempt"])
        if attempt > 1:
            latest = await graph.aget_state(thread_config(config))
            if (latest.metadata or {}).get("run_id") == run_id:
                # This run already checkpointed before its replica died: continue from there.
                await self._restore_events(run, graph, config, writer)
                # The live `next` leaves out tasks whose writes were saved, so a step that
                # finished just before the kill (its checkpoint never written) shows no `next`
                # either: only a checkpoint with no tasks at all has ended the graph.
                if (
                    latest.interrupts
                    or not latest.tasks
                    or await at_breakpoint(graph, latest, kwargs)
                ):
                    return _DONE, config
                writer.emit("metadata", {"run_id": run_id, "attempt": attempt})
                log.info(
                    "run %s: attempt %s continues from its last checkpoint", run_id, run["attempt"]
                )
                return _CONTINUE, config
            writer.emit("metadata", {"run_id": run_id, "attempt": attempt})
        start = RunnableConfig(**config)
        checkpoint = kwargs.get("checkpoint") or {}
        if checkpoint.get("checkpoint_id"):
            start["configurable"] = {
                **(config.get("configurable") or {}),
                "checkpoint_id": checkpoint["checkpoint_id"],
                "checkpoint_ns": checkpoint.get("checkpoint_ns") or "",
            }
        command = kwargs.get("command") or {}
        if command.get("resume") is not None:
            # Who may answer was decided once, when the resume was bound to its interrupt
            # (`server.decisions.bind_resume`); here only: does that interrupt still wait?
            state = await graph.aget_state(start)
            bound = kwargs.get("bound_interrupt")
            if bound is None or bound not in {i.id for i in state.interrupts}:
                await self._expire_bound(kwargs)
                raise ResumeConflict(
                    f"interrupt {bound} is no longer waiting: the thread moved on before this "
                    "resume ran; nothing was released"
                )
        return graph_input(kwargs), start

    async def _restore_events(
        self, run: dict[str, Any], graph: Graph, config: RunnableConfig, writer: EventWriter
    ) -> None:
        """Store the `updates`/`values` of steps this run checkpointed but never stored."""
        run_id: uuid.UUID = run["run_id"]
        requested = list((run.get("kwargs") or {}).get("stream_mode") or ["values"])

        async def stored() -> list[tuple[str, str]]:
            async with self.pool.connection() as conn:
                return await repo.step_events_of(conn, run_id)

        have = await while_leased(self.running, run, "reading its events", stored)
        rebuilt = await step_events(graph, thread_config(config), str(run_id), requested)
        missing = missing_events(have, rebuilt)
        for name, data in missing:
            writer.emit_json(name, data)
        if missing:
            log.warning(
                "run %s: stored %d events its earlier attempt checkpointed but lost",
                run_id,
                len(missing),
            )

    async def _expire_bound(self, kwargs: dict[str, Any]) -> None:
        approval_id = kwargs.get("approval_id")
        if approval_id:
            async with self.pool.connection() as conn, conn.transaction():
                await expire_approval(
                    conn, uuid.UUID(str(approval_id)), "its resume ran after the thread moved on"
                )


__all__ = ["MAX_DB_LOSS_ATTEMPTS", "ResumeConflict", "RunExecutor", "at_breakpoint"]
