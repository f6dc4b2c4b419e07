"""Execute one claimed run through the graph, stream its events, and record how it ended.

The final run status, the run's output (what `/wait` and `/join` return), the last events and
the thread status are committed in one transaction, fenced by the lease, before anyone's
stream closes. A run taken over after its replica died continues from the thread's last
checkpoint (`astream(None)`) when that checkpoint was written by this run.

Every run's final transaction also makes the approval queue agree with the thread
(`server.approvals.sync_pending`): waiting approval interrupts are recorded, approvals whose
interrupt no longer waits expire. A failure there fails the transaction (nothing is
swallowed): the run is not reported finished and its lease brings it back.

A resume is bound to one interrupt when it is created (`server.decisions`); when it starts,
that interrupt must still wait, or the run fails with `ResumeConflict` and its approval expires.
A rollback never erases a decision or a side effect: a resume run, or a run that executed a
refund, is cancelled as `interrupt` instead.

Losing the database (docs/http-service.md, "Database outages") is not a run error: a run
whose graph failed because Postgres was unreachable (`psycopg.OperationalError`, which
includes `PoolTimeout` and `AdminShutdown`, or an `OSError`) goes back to the queue and
continues from its last checkpoint as its next attempt. Recording an end or a release is
retried with backoff while the run's lease is still ours; after that the lease expires and a
reaper (on any replica) requeues the run.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import psycopg
from langchain_core.runnables import RunnableConfig
from langgraph.errors import GraphDrained
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import RunControl
from langgraph.types import Command, Send, StateSnapshot

from core.db.pool import DbPool
from graph.context import RunContext
from graph.observer import instrument_run_config
from server.approvals import reopen, sync_pending
from server.decisions import expire_approval
from server.runs import repo
from server.runs.conflicts import retry_conflicts
from server.runs.events import EventHub, EventWriter
from server.runs.models import GRAPH_ID
from server.runs.recovery import missing_events, step_events
from server.sse import dumps, interrupt_json, to_jsonable

log = logging.getLogger(__name__)

Graph = CompiledStateGraph[Any, Any, Any, Any]
APPROVER_ROLES = frozenset({"approver", "admin"})
T = TypeVar("T")

DB_ERRORS: tuple[type[BaseException], ...] = (psycopg.OperationalError, OSError)
"""What "the database is unreachable" looks like (PoolTimeout is an OperationalError)."""
MAX_DB_LOSS_ATTEMPTS = 10
"""A run that lost the database this many times ends with `error` instead of requeueing."""
LEASE_MARGIN_S = 1.0
"""Retrying a write stops this long before the lease (as last renewed) would expire."""


def lost_database(exc: BaseException) -> bool:
    """True when `exc` (or what it was raised from) means the database was unreachable.

    `TimeoutError` is an `OSError` too, but a graph's timeout (a slow provider) is a real
    failure, not a database outage.
    """
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, psycopg.OperationalError):
            return True
        if isinstance(seen, OSError) and not isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__
    return False


class RunRefused(Exception):
    """The run may not execute (e.g. a user resuming an approval); it ends with `error`."""


class InvalidResume(Exception):
    """`strict_resume` was set but the thread has no pending interrupt."""


class ResumeConflict(Exception):
    """The interrupt a queued resume was bound to no longer waits (the thread moved on)."""


@dataclass(eq=False)
class RunHandle:
    """A run executing in this process: how to cancel or drain it."""

    run_id: uuid.UUID
    thread_id: uuid.UUID
    attempt: int
    control: RunControl = field(default_factory=RunControl)
    task: asyncio.Task[None] | None = None
    reason: str | None = None
    """Why the task was cancelled: interrupt, rollback, lease_lost, stalled or shutdown."""
    finishing: bool = False
    """Set once the graph has finished; cancellation no longer applies."""
    finishing_since: float | None = None
    """`time.monotonic()` when the run started finishing (the worker bounds how long)."""
    lease_until: float = field(default_factory=lambda: time.monotonic() + 30.0)
    """Until when (monotonic) the lease is surely ours: set at the claim and at every
    successful renewal, from the time before the statement was sent."""

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

        `force` cancels a finishing run too (one stuck recording its end: the worker stopped
        renewing its lease, and the reaper gives it to another attempt).
        """
        if self.task is None or self.task.done() or self.reason is not None:
            return
        if self.finishing and not force:
            return
        self.reason = reason
        self.task.cancel()

    def drain(self) -> None:
        """Ask the graph to stop at the next step boundary (graceful shutdown)."""
        self.control.request_drain("shutdown")


def pending_approval(state: StateSnapshot) -> bool:
    """True when a pending interrupt is an approval request (`action_requests`)."""
    return any(isinstance(i.value, dict) and "action_requests" in i.value for i in state.interrupts)


def build_config(run: dict[str, Any], recursion_limit: int) -> RunnableConfig:
    """The RunnableConfig a run executes with; identity comes from the run, never the client.

    Args:
        run: the `runs` row.
        recursion_limit: the server's cap (`settings.recursion_limit`).
    """
    kwargs = run.get("kwargs") or {}
    client = kwargs.get("config") or {}
    thread_id = str(run["thread_id"])
    configurable = {
        **(client.get("configurable") or {}),
        "thread_id": thread_id,
        "user_id": run["owner_id"],
        "tenant_id": run["tenant_id"],
        # Tool permissions follow the caller's key, never a client-supplied value.
        "role": kwargs.get("role") or "user",
        # Who asked for what this run executes: a resume acts for the approval's requester.
        "requester_id": kwargs.get("requester_id") or run["owner_id"],
    }
    metadata = {
        **(client.get("metadata") or {}),
        **(run.get("metadata") or {}),
        "run_id": str(run["run_id"]),
        "thread_id": thread_id,
        "assistant_id": run["assistant_id"],
        "graph_id": GRAPH_ID,
        "user_id": run["owner_id"],
        "tenant_id": run["tenant_id"],
        "run_attempt": run.get("attempt", 1),
    }
    limit = client.get("recursion_limit")
    config = RunnableConfig(
        configurable=configurable,
        metadata=metadata,
        recursion_limit=min(int(limit), recursion_limit) if limit else recursion_limit,
    )
    if client.get("tags"):
        config["tags"] = list(client["tags"])
    if client.get("run_name"):
        config["run_name"] = str(client["run_name"])
    return config


def build_context(run: dict[str, Any]) -> RunContext:
    """The identity a run executes with (the graph's context), from the run, never the client.

    A client's `context` body field is not used: every field of the context is identity.
    """
    kwargs = run.get("kwargs") or {}
    return RunContext(
        user_id=run["owner_id"],
        tenant_id=run["tenant_id"],
        role=kwargs.get("role") or "user",
        requester_id=kwargs.get("requester_id") or run["owner_id"],
    )


def graph_input(kwargs: dict[str, Any]) -> Any:
    """The first argument of `astream`: the input, a `Command`, or None (continue)."""
    command = kwargs.get("command")
    if not command:
        return kwargs.get("input")
    goto = command.get("goto")
    if isinstance(goto, dict):
        goto = Send(goto["node"], goto.get("input"))
    elif isinstance(goto, list):
        goto = [Send(g["node"], g.get("input")) if isinstance(g, dict) else g for g in goto]
    return Command(
        resume=command.get("resume"),
        update=command.get("update"),
        goto=goto if goto is not None else (),
    )


def final_values(state: StateSnapshot) -> dict[str, Any]:
    """The thread's values with pending interrupts merged in, as `/wait` returns them."""
    raw = to_jsonable(state.values)
    values: dict[str, Any] = raw if isinstance(raw, dict) else {"values": raw}
    if state.interrupts:
        values["__interrupt__"] = [interrupt_json(i) for i in state.interrupts]
    return values


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
    """Runs claimed runs; one instance per worker."""

    def __init__(
        self, pool: DbPool, hub: EventHub, *, worker_id: str, recursion_limit: int
    ) -> None:
        self.pool = pool
        self.hub = hub
        self.worker_id = worker_id
        self.recursion_limit = recursion_limit
        self._handles: dict[uuid.UUID, RunHandle] = {}

    async def _while_leased(
        self, run: dict[str, Any], what: str, write: Callable[[], Awaitable[T]]
    ) -> T:
        """Run `write()`, retrying with backoff while the database is unreachable.

        Retries stop once the run's lease (as last renewed) is about to expire: then the
        last error is raised, the run is left to its lease, and a reaper requeues it.
        """
        handle = self._handles.get(run["run_id"])
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

    async def execute(self, run: dict[str, Any], graph: Graph, handle: RunHandle) -> None:
        """Execute a claimed run to its end (or until cancelled, drained or taken over)."""
        self._handles[run["run_id"]] = handle
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
        finally:
            if self._handles.get(run["run_id"]) is handle:
                del self._handles[run["run_id"]]

    async def _execute_held(self, run: dict[str, Any], graph: Graph, handle: RunHandle) -> None:
        run_id: uuid.UUID = run["run_id"]
        fence = (self.worker_id, int(run["attempt"]))

        async def first_seq() -> int:
            async with self.pool.connection() as conn:
                return await repo.next_seq(conn, run_id)

        seq = await self._while_leased(run, "reading its event log", first_seq)
        writer = EventWriter(
            self.pool,
            self.hub,
            run_id,
            fence=fence,
            next_seq=seq,
            on_lost=lambda: handle.cancel("lease_lost"),
        )
        writer.start()
        try:
            if run.get("cancel_action"):
                await self._cancelled(run, graph, writer, fence, run["cancel_action"])
                return
            await self._execute(run, graph, handle, writer, fence)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
            await self._cancelled(run, graph, writer, fence, handle.reason or "shutdown")
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
            if todo is not _DONE:
                continuing = todo is _CONTINUE
                await self._stream(
                    graph,
                    None if continuing else todo,
                    start_config,
                    kwargs,
                    writer,
                    handle.control,
                    context=build_context(run),
                    continuing=continuing,
                )
            handle.start_finishing()
            state = await self._while_leased(
                run, "reading its final state", lambda: graph.aget_state(thread_config(config))
            )
        except GraphDrained:
            handle.start_finishing()
            await self._release(run, writer, fence)
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
                await self._release(run, writer, fence)
                return
            await self._failed(run, graph, config, writer, fence, exc)
            return
        paused = bool(state.interrupts) or bool(state.next)
        await self._finish(
            run,
            writer,
            fence,
            status="interrupted" if paused else "success",
            output=final_values(state),
            error=None,
            thread_status="interrupted" if paused else "idle",
            interrupts=[interrupt_json(i) for i in state.interrupts],
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
            # Checked again here: the thread may have moved on while the resume was queued.
            state = await graph.aget_state(start)
            if pending_approval(state) and kwargs.get("role") not in APPROVER_ROLES:
                raise RunRefused("resuming an approval requires role approver or admin")
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

        have = await self._while_leased(run, "reading its events", stored)
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

    async def _stream(
        self,
        graph: Graph,
        todo: Any,
        config: RunnableConfig,
        kwargs: dict[str, Any],
        writer: EventWriter,
        control: RunControl,
        *,
        context: RunContext,
        continuing: bool = False,
    ) -> None:
        """Stream the graph into `writer`.

        `continuing`: a later attempt continues from its own checkpoint; LangGraph then first
        streams that checkpoint's values, which the stream already holds: skipped.
        """
        requested: list[str] = list(kwargs.get("stream_mode") or ["values"])
        skip_replayed_values = continuing and "values" in requested
        modes = {"messages" if m == "messages-tuple" else m for m in requested}
        wants_updates = "updates" in requested
        if "values" not in requested and not wants_updates:
            modes.add("updates")  # interrupts are always surfaced (as `values` events)
        subgraphs = bool(kwargs.get("stream_subgraphs"))
        async for part in graph.astream(
            todo,
            config,
            context=context,
            stream_mode=cast(Any, sorted(modes)),
            durability="sync",
            subgraphs=subgraphs,
            interrupt_before=kwargs.get("interrupt_before"),
            interrupt_after=kwargs.get("interrupt_after"),
            control=control,
        ):
            if subgraphs:
                namespace, mode, data = part
            else:
                namespace, (mode, data) = (), part
            suffix = "".join(f"|{n}" for n in namespace)
            if skip_replayed_values:
                skip_replayed_values = False
                if mode == "values" and not namespace:
                    continue
            if mode == "updates" and isinstance(data, dict) and "__metadata__" in data:
                # A task whose writes an earlier attempt saved is replayed, marked `cached`.
                data = {k: v for k, v in data.items() if k != "__metadata__"}
            if mode == "updates" and not wants_updates:
                if isinstance(data, dict) and "__interrupt__" in data:
                    writer.emit("values" + suffix, {"__interrupt__": data["__interrupt__"]})
                continue
            writer.emit(mode + suffix, list(data) if mode == "messages" else data)

    async def _failed(
        self,
        run: dict[str, Any],
        graph: Graph,
        config: RunnableConfig,
        writer: EventWriter,
        fence: tuple[str, int],
        exc: Exception,
    ) -> None:
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
        await self._finish(
            run,
            writer,
            fence,
            status="error",
            output={"__error__": error},
            error=error,
            thread_status=thread_status,
            interrupts=[interrupt_json(i) for i in state.interrupts] if state else None,
            state=state,
        )

    async def _finish(
        self,
        run: dict[str, Any],
        writer: EventWriter,
        fence: tuple[str, int],
        *,
        status: str,
        output: dict[str, Any],
        error: dict[str, Any] | None,
        thread_status: str,
        interrupts: list[dict[str, Any]] | None,
        state: StateSnapshot | None = None,
    ) -> None:
        """Commit the final status, the remaining events, the thread status and the queue.

        `interrupts` are the thread's waiting interrupts now (None: unknown, the queue is
        left as it is).
        """
        await writer.close()
        run_id: uuid.UUID = run["run_id"]
        events = writer.take()

        async def commit() -> bool:
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
            return False  # pragma: no cover - the last attempt raises

        finished = await self._while_leased(run, f"recording its end ({status})", commit)
        if finished:
            self.hub.wake(str(run_id))
            log.info("run %s: %s", run_id, status)

    async def _commit_finish(
        self,
        run: dict[str, Any],
        events: list[tuple[int, str, str]],
        fence: tuple[str, int],
        *,
        status: str,
        output: dict[str, Any],
        error: dict[str, Any] | None,
        thread_status: str,
        interrupts: list[dict[str, Any]] | None,
        state: StateSnapshot | None,
    ) -> bool:
        """One transaction, locks in the documented order: thread, run, approvals."""
        run_id: uuid.UUID = run["run_id"]
        async with self.pool.connection() as conn, conn.transaction():
            await repo.lock_thread(conn, run["thread_id"])
            row = await repo.finish_run(
                conn,
                run_id,
                fence=fence,
                status=status,
                output=dumps(output),
                error=dumps(error) if error is not None else None,
            )
            if row is None:
                log.warning("run %s: no longer held by this worker; result dropped", run_id)
                return False
            await repo.insert_events(conn, run_id, events)
            await repo.settle_thread_status(conn, run["thread_id"], thread_status)
            if interrupts is not None:
                thread = await repo.get_thread(conn, run["thread_id"])
                await sync_pending(
                    conn,
                    run=dict(row),
                    thread=dict(thread or {}),
                    interrupts=interrupts,
                    state=state,
                )
            await repo.notify(conn, repo.EVENTS_CHANNEL, str(run_id))
            await repo.notify(conn, repo.RUNS_CHANNEL)
        return True

    async def _cancelled(
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
            await self._finish(
                run,
                writer,
                fence,
                status="interrupted",
                output=final_values(state),
                error=None,
                thread_status="interrupted" if state.interrupts else "idle",
                interrupts=[interrupt_json(i) for i in state.interrupts],
                state=state,
            )
        else:
            await self._release(run, writer, fence)

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
            await repo.lock_thread(conn, thread_id)
            held = await repo.held_run(conn, run_id, fence=fence)
            if held is None:
                return
            await repo.delete_run_checkpoints(conn, thread_id, run_id, drop_resume=is_resume)
            await repo.delete_run(conn, run_id)
            await repo.settle_thread_status(conn, thread_id, "interrupted" if waiting else "idle")
            thread = await repo.get_thread(conn, thread_id)
            await sync_pending(
                conn,
                run=dict(held),
                thread=dict(thread or {}),
                interrupts=waiting,
                state=before_state,
            )
            await repo.notify(conn, repo.EVENTS_CHANNEL, str(run_id))
            await repo.notify(conn, repo.RUNS_CHANNEL)
        self.hub.wake(str(run_id))
        log.info("run %s: rolled back", run_id)

    async def _release(
        self, run: dict[str, Any], writer: EventWriter, fence: tuple[str, int]
    ) -> None:
        """Give the run back to the queue (shutdown, lost database).

        Another attempt, here or on another replica, continues it from its last checkpoint.
        """
        await writer.close()
        run_id: uuid.UUID = run["run_id"]
        events = writer.take()

        async def release() -> bool:
            async with self.pool.connection() as conn, conn.transaction():
                await repo.insert_events(conn, run_id, events, fence=fence)
                released = await repo.release_run(conn, run_id, fence=fence)
                if released:
                    await repo.notify(conn, repo.RUNS_CHANNEL)
            return released

        if await self._while_leased(run, "giving it back to the queue", release):
            log.info("run %s: released for another worker", run_id)
        else:
            log.warning("run %s: no longer held by this worker; not released", run_id)


def thread_config(config: RunnableConfig) -> RunnableConfig:
    """The config that reads the thread's latest state."""
    return RunnableConfig(
        configurable={"thread_id": (config.get("configurable") or {})["thread_id"]}
    )


async def reopen_unstarted_resume(conn: repo.Conn, run: dict[str, Any]) -> None:
    """A resume run cancelled before it started released nothing: re-open its approval."""
    approval_id = (run.get("kwargs") or {}).get("approval_id")
    if not approval_id:
        return
    cur = await conn.execute(
        "SELECT status FROM approvals WHERE approval_id = %s AND resume_run_id = %s FOR UPDATE",
        (uuid.UUID(str(approval_id)), run["run_id"]),
    )
    row = await cur.fetchone()
    if row is not None and row["status"] in ("approved", "edited", "rejected"):
        await reopen(conn, uuid.UUID(str(approval_id)))


__all__ = [
    "DB_ERRORS",
    "InvalidResume",
    "ResumeConflict",
    "RunExecutor",
    "RunHandle",
    "RunRefused",
    "at_breakpoint",
    "build_config",
    "build_context",
    "final_values",
    "graph_input",
    "lost_database",
    "pending_approval",
    "reopen_unstarted_resume",
]
