"""`RunService`: create, read, cancel and follow runs on behalf of a principal.

`create` is the only way runs come to exist (the HTTP routes and the approvals module both use
it). It inserts a `pending` run inside a transaction that locks the thread row and applies the
multitask strategy against the thread's active runs; the workers of every replica then race
for it in Postgres.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncGenerator, Collection
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from langchain_core.runnables import RunnableConfig
from langgraph.types import StateSnapshot
from psycopg.rows import DictRow

from core.budget.budgets import Payer
from core.budget.ledger import PgUsageLedger
from core.errors import Conflict, Forbidden, NotFound, TooManyRequests, Unprocessable
from core.guardrails.serde import redact_user_input
from core.identity import Principal
from core.observability.logging import current_request_id
from core.observability.tracing import current_traceparent
from graph.runtime import Runtime
from server.approvals import record_pending
from server.decisions import BoundResume, bind_resume, is_approval_request
from server.jsonable import dumps
from server.runs import repo
from server.runs.conflicts import retry_conflicts
from server.runs.events import EventHub, hub_for, tail, wait_until_done
from server.runs.executor import final_values, reopen_unstarted_resume
from server.runs.guards import (
    PROTECTED_NODES,
    MessageLimits,
    check_command,
    check_input,
    message_key,
    request_digest,
)
from server.runs.models import (
    ACTIVE_STATUSES,
    ALLOWED_CONFIG_KEYS,
    ASSISTANT_ID,
    CHECKPOINT_CONFIGURABLE,
    GRAPH_ID,
    RESERVED_CONFIGURABLE,
    TERMINAL_STATUSES,
    CancelAction,
    Run,
    RunCreate,
)

log = logging.getLogger(__name__)

RESENDABLE_STATUSES = frozenset({"error"})
"""A run whose exact input arrives again right after it ended so answers it (a client retrying
after a failure); while a run is active the multitask strategy decides, as the reference does."""

CONFLICT_DETAIL = (
    "Thread is already running a task. Wait for it to finish or choose a different "
    "multitask strategy."
)


def parse_uuid(value: str | uuid.UUID, what: str) -> uuid.UUID:
    """Parse an id from a path; a malformed one is simply not found (404)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} {value} not found") from None


def seconds_until_reset(scope: str, now: datetime | None = None) -> int:
    """When a spent budget scope frees up again: next UTC day or month; a thread never."""
    now = now or datetime.now(UTC)
    if scope == "user_day":
        reset = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    elif scope == "tenant_month":
        first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        reset = (first + timedelta(days=32)).replace(day=1)
    else:
        return 86_400
    return max(1, int((reset - now).total_seconds()))


async def check_budget(runtime: Runtime, principal: Principal, thread_id: str | None) -> None:
    """Refuse a new run with 429 when one of the caller's budgets is already spent.

    The graph still reserves every call's estimate before calling the model (the guarantee);
    this makes the API answer 429 up front instead of a run that can only refuse.
    """
    ledger = runtime.deps.usage_ledger
    if not isinstance(ledger, PgUsageLedger):
        return
    payer = Payer(
        tenant_id=principal.tenant_id, user_id=principal.user_id, thread_id=thread_id, run_id=None
    )
    for scope in await ledger.spend(payer):
        remaining = scope.remaining_usd
        if remaining is not None and remaining <= 0:
            raise TooManyRequests(
                f"budget exceeded: the {scope.scope} budget of {scope.limit_usd} USD is spent",
                retry_after=seconds_until_reset(scope.scope),
            )


class RunService:
    """Runs, scoped by the calling principal (a thread it cannot see is a 404).

    Args:
        runtime: the process runtime (pool, graph, checkpointer, settings).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.pool = runtime.pool
        self.graph = runtime.graph
        self.recursion_limit = int(runtime.deps.settings.recursion_limit)

    @property
    def hub(self) -> EventHub:
        """The process's notification hub (polling-only when no worker runs here)."""
        return hub_for(self.runtime)

    # ----------------------------------------------------------------------- create

    async def create(
        self,
        principal: Principal,
        thread_id: str | uuid.UUID | None,
        body: RunCreate,
        *,
        idempotency_key: str | None = None,
        approval_id: uuid.UUID | None = None,
        decision_comment: str | None = None,
    ) -> Run:
        """`_create`, retried when Postgres aborts it for a deadlock or serialization failure."""
        async for attempt in retry_conflicts("creating a run"):
            with attempt:
                return await self._create(
                    principal,
                    thread_id,
                    body,
                    idempotency_key=idempotency_key,
                    approval_id=approval_id,
                    decision_comment=decision_comment,
                )
        raise AssertionError("unreachable: the last attempt raises")  # pragma: no cover

    async def _create(
        self,
        principal: Principal,
        thread_id: str | uuid.UUID | None,
        body: RunCreate,
        *,
        idempotency_key: str | None = None,
        approval_id: uuid.UUID | None = None,
        decision_comment: str | None = None,
    ) -> Run:
        """Create a pending run on a thread (or, with `thread_id=None`, a stateless run).

        A resume is bound to the interrupt it answers and, for an approval, records the
        decision in this transaction (`server.decisions.bind_resume`). A request re-sent with
        the same `Idempotency-Key` (or the same message id, or the same input right after
        a run of it failed) is answered with its first run.

        Raises:
            NotFound: the thread or assistant does not exist or is not visible.
            Conflict: `multitask_strategy="reject"` and the thread is busy, or a resume with
                nothing (or something already decided) to resume.
            Forbidden: a user resuming an approval, a requester approving their own request,
                or steering the graph (`command.update`, `command.goto`) without role admin.
            Unprocessable: the run asks for something invalid (unknown node, reserved config,
                an input without a new user message, a reused key with another body).
            TooManyRequests: a budget of the caller (user/day, tenant/month, thread) is spent.
        """
        stateless = thread_id is None
        if body.assistant_id not in (GRAPH_ID, ASSISTANT_ID):
            raise NotFound(f"assistant {body.assistant_id} not found")
        tid = uuid.uuid4() if stateless else self._thread_uuid(thread_id, body)
        config = self._client_config(body, tid, principal)
        self._check_nodes(body)
        command = body.command
        steers = command is not None and (command.update is not None or command.goto is not None)
        if steers and not principal.is_admin:
            raise Forbidden("command.update and command.goto require role admin")
        limits = MessageLimits.of(self.runtime.deps.settings)
        if command is not None:
            check_command(command.update, command.goto, limits)
        if body.input is not None:
            check_input(body.input, limits)
        if not body.is_resume:  # a decision on held work is never blocked by the budget
            await check_budget(self.runtime, principal, None if stateless else str(tid))
        digest = request_digest(body)
        key = idempotency_key or (None if stateless else message_key(tid, body.input))
        if key is not None:
            async with self.pool.connection() as conn:
                earlier = await repo.run_by_request_key(
                    conn, principal.tenant_id, principal.user_id, key
                )
            if earlier is not None:
                return self._replayed(earlier, digest, tid, stateless)

        state = None
        if not stateless:
            await self._require_visible(principal, tid, missing_ok=True)
            try:
                state = await self.graph.aget_state(self._state_config(tid, body))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise Conflict(f"the state of thread {tid} cannot be read: {exc}") from exc
            await self._check_fork(tid, body, state)

        run_id = uuid.uuid4()
        kwargs = self._kwargs(body, config, principal, stateless)
        if kwargs["input"] is not None:
            # The runs table and its events are data at rest too: store no raw PII.
            kwargs["input"] = await asyncio.to_thread(redact_user_input, kwargs["input"])
        patch = orjson.dumps({"graph_id": GRAPH_ID, "assistant_id": ASSISTANT_ID}).decode()
        cancels: list[dict[str, Any]] = []
        async with self.pool.connection() as conn, conn.transaction():
            thread = await repo.get_thread(conn, tid, lock=True)
            if thread is None:
                if not (stateless or body.if_not_exists == "create"):
                    raise NotFound(f"thread {tid} not found")
                await repo.insert_thread(
                    conn, tid, tenant_id=principal.tenant_id, owner_id=principal.user_id
                )
                thread = await repo.get_thread(conn, tid, lock=True)
            if thread is None or not principal.can_see(thread["owner_id"], thread["tenant_id"]):
                raise NotFound(f"thread {tid} not found")
            if not stateless and body.input is not None and idempotency_key is None:
                latest = await repo.latest_input_run(conn, tid)
                if (
                    latest is not None
                    and latest["request_hash"] == digest
                    and latest["status"] in RESENDABLE_STATUSES
                ):
                    return Run.from_row(dict(latest))
            active = await repo.active_runs(conn, tid)
            if active and body.multitask_strategy == "reject":
                raise Conflict(CONFLICT_DETAIL)
            if (
                body.input is None
                and command is None
                and not stateless
                and thread["status"] not in ("interrupted", "error")
            ):
                raise Unprocessable(
                    "input: send at least one new user message; `input: null` only continues "
                    "a thread that is interrupted or whose last run failed"
                )
            if body.is_resume:
                assert command is not None and state is not None
                bound = await self._bind_resume(
                    conn,
                    principal,
                    thread,
                    state,
                    command.resume,
                    run_id,
                    approval_id=approval_id,
                    comment=decision_comment,
                )
                kwargs["command"] = {**(kwargs["command"] or {}), "resume": bound.command_resume}
                kwargs["bound_interrupt"] = bound.interrupt_id
                if bound.approval_id is not None:
                    kwargs["approval_id"] = str(bound.approval_id)
                    kwargs["requester_id"] = bound.requester_id
            elif approval_id is not None:
                raise Conflict(f"approval {approval_id} is not waiting for a decision")
            row = await repo.insert_run(
                conn,
                run_id=run_id,
                thread_id=tid,
                tenant_id=principal.tenant_id,
                owner_id=principal.user_id,
                assistant_id=ASSISTANT_ID,
                kwargs=dumps(kwargs),
                metadata=dumps(body.metadata or {}),
                multitask_strategy=body.multitask_strategy,
                after_seconds=body.after_seconds,
                request_key=key,
                request_hash=digest,
            )
            await repo.insert_events(
                conn, run_id, [(0, "metadata", dumps({"run_id": str(run_id), "attempt": 1}))]
            )
            if body.multitask_strategy in ("interrupt", "rollback"):
                for other in active:
                    if other["status"] == "pending":
                        await repo.cancel_pending(conn, other["run_id"], body.multitask_strategy)
                        await reopen_unstarted_resume(conn, dict(other))
                    else:
                        await repo.request_cancel(conn, other["run_id"], body.multitask_strategy)
                    cancels.append(dict(other))
            await repo.mark_thread_busy(conn, tid, patch)
            for other in cancels:
                await repo.notify(conn, repo.EVENTS_CHANNEL, str(other["run_id"]))
            await repo.notify(conn, repo.RUNS_CHANNEL)
        log.info("run %s created on thread %s (%s)", run_id, tid, body.multitask_strategy)
        return Run.from_row(dict(row))

    async def _check_fork(
        self, thread_id: uuid.UUID, body: RunCreate, state: StateSnapshot
    ) -> None:
        """A run from a past checkpoint may not re-enter a held or released tool call.

        Raises:
            Conflict: the checkpoint is not the latest and waits on an interrupt or is about
                to judge, hold or execute tool calls (time travel into a decision).
        """
        start = body.start_checkpoint
        if start is None or not start.checkpoint_id:
            return
        latest = await self.graph.aget_state(_thread_config(thread_id))
        latest_id = (latest.config.get("configurable") or {}).get("checkpoint_id")
        if start.checkpoint_id == latest_id:
            return
        if state.interrupts or PROTECTED_NODES & set(state.next):
            raise Conflict(
                "a run from a past checkpoint cannot re-enter a tool call that was held, "
                "decided or executed; fork from before the request or after the turn"
            )

    @staticmethod
    async def _interrupting_run(
        conn: repo.Conn, thread: DictRow, state: StateSnapshot
    ) -> dict[str, Any]:
        """The run that raised the waiting interrupt (its checkpoint names it), else the owner."""
        raw = (state.metadata or {}).get("run_id")
        try:
            run_id = uuid.UUID(str(raw)) if raw else None
        except ValueError:
            run_id = None
        row = await repo.get_run(conn, run_id) if run_id is not None else None
        if row is not None and row["thread_id"] == thread["thread_id"]:
            return dict(row)
        return {"owner_id": thread["owner_id"], "kwargs": {}}

    def _replayed(
        self, earlier: DictRow, digest: str, thread_id: uuid.UUID, stateless: bool
    ) -> Run:
        """The first run of a re-sent request (422 if the key came with another request)."""
        if earlier["request_hash"] != digest:
            raise Unprocessable(
                "this Idempotency-Key (or message id) was already used for a different request"
            )
        if not stateless and earlier["thread_id"] != thread_id:
            raise Unprocessable("this Idempotency-Key was already used on another thread")
        log.info("run %s answers a re-sent request", earlier["run_id"])
        return Run.from_row(dict(earlier))

    async def _bind_resume(
        self,
        conn: repo.Conn,
        principal: Principal,
        thread: DictRow,
        state: StateSnapshot,
        resume: Any,
        run_id: uuid.UUID,
        *,
        approval_id: uuid.UUID | None,
        comment: str | None,
    ) -> BoundResume:
        """Record a missing approval row first (its run may still be finishing), then bind."""
        approvals = [
            {"value": i.value, "id": i.id} for i in state.interrupts if is_approval_request(i.value)
        ]
        if approvals:
            requester = await self._interrupting_run(conn, thread, state)
            try:
                await record_pending(
                    conn,
                    run={
                        **requester,
                        "thread_id": thread["thread_id"],
                        "tenant_id": thread["tenant_id"],
                    },
                    thread=dict(thread),
                    interrupts=approvals,
                    state=state,
                )
            except ValueError as exc:
                raise Conflict(f"the waiting approval cannot be answered: {exc}") from exc
        return await bind_resume(
            conn,
            principal=principal,
            thread_id=thread["thread_id"],
            resume=resume,
            waiting=list(state.interrupts),
            run_id=run_id,
            approval_id=approval_id,
            comment=comment,
        )

    def _thread_uuid(self, thread_id: str | uuid.UUID | None, body: RunCreate) -> uuid.UUID:
        try:
            return uuid.UUID(str(thread_id))
        except ValueError:
            if body.if_not_exists == "create":
                raise Unprocessable(f"thread_id must be a UUID, got {thread_id!r}") from None
            raise NotFound(f"thread {thread_id} not found") from None

    def _client_config(
        self, body: RunCreate, thread_id: uuid.UUID, principal: Principal
    ) -> dict[str, Any]:
        """Validate the client's config; identity keys are the server's, never the client's."""
        config = dict(body.config or {})
        unknown = sorted(set(config) - ALLOWED_CONFIG_KEYS)
        if unknown:
            raise Unprocessable(
                f"config: unsupported key(s) {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(ALLOWED_CONFIG_KEYS))}"
            )
        if not isinstance(config.get("configurable") or {}, dict):
            raise Unprocessable("config.configurable must be an object")
        configurable = dict(config.get("configurable") or {})
        own = {
            "thread_id": str(thread_id),
            "user_id": principal.user_id,
            "tenant_id": principal.tenant_id,
            "role": principal.role,
            "requester_id": principal.user_id,
        }
        for key in RESERVED_CONFIGURABLE:
            if key in configurable:
                if str(configurable[key]) != own[key]:
                    raise Unprocessable(
                        f"config.configurable.{key} is set by the server and cannot be chosen"
                    )
                del configurable[key]
        for key in list(configurable):
            if key.startswith("__") or key in CHECKPOINT_CONFIGURABLE:
                raise Unprocessable(
                    f"config.configurable.{key} is reserved (use `checkpoint` to pick one)"
                )
        limit = config.get("recursion_limit")
        if limit is not None and (
            not isinstance(limit, int)
            or isinstance(limit, bool)
            or not 1 <= limit <= self.recursion_limit
        ):
            raise Unprocessable(
                f"config.recursion_limit must be an integer from 1 to {self.recursion_limit}"
            )
        if config.get("run_name") is not None and not isinstance(config["run_name"], str):
            raise Unprocessable("config.run_name must be a string")
        if config.get("metadata") is not None and not isinstance(config["metadata"], dict):
            raise Unprocessable("config.metadata must be an object")
        if config.get("tags") is not None and not (
            isinstance(config["tags"], list) and all(isinstance(t, str) for t in config["tags"])
        ):
            raise Unprocessable("config.tags must be a list of strings")
        if configurable:
            config["configurable"] = configurable
        else:
            config.pop("configurable", None)
        return config

    def _check_nodes(self, body: RunCreate) -> None:
        nodes = set(self.graph.nodes) - {"__start__"}
        for field in ("interrupt_before", "interrupt_after"):
            value = getattr(body, field)
            if isinstance(value, list):
                unknown = sorted(set(value) - nodes)
                if unknown:
                    raise Unprocessable(
                        f"{field}: unknown node(s) {', '.join(unknown)}; the graph's nodes are "
                        f"{', '.join(sorted(nodes))}"
                    )

    @staticmethod
    def _state_config(thread_id: uuid.UUID, body: RunCreate) -> RunnableConfig:
        configurable: dict[str, Any] = {"thread_id": str(thread_id)}
        start = body.start_checkpoint
        if start is not None and start.checkpoint_id:
            configurable["checkpoint_id"] = start.checkpoint_id
            configurable["checkpoint_ns"] = start.checkpoint_ns
        return RunnableConfig(configurable=configurable)

    @staticmethod
    def _kwargs(
        body: RunCreate, config: dict[str, Any], principal: Principal, stateless: bool
    ) -> dict[str, Any]:
        start = body.start_checkpoint
        kwargs: dict[str, Any] = {
            "input": body.input,
            "command": body.command.model_dump(exclude_none=True) if body.command else None,
            "config": config,
            "context": body.context,
            "stream_mode": list(body.stream_mode),
            "stream_subgraphs": body.stream_subgraphs,
            "stream_resumable": body.stream_resumable,
            "interrupt_before": body.interrupt_before,
            "interrupt_after": body.interrupt_after,
            "checkpoint": (
                {"checkpoint_id": start.checkpoint_id, "checkpoint_ns": start.checkpoint_ns}
                if start is not None
                else None
            ),
            "on_disconnect": body.on_disconnect,
            "strict_resume": body.strict_resume,
            "durability": "sync",
            "user_id": principal.user_id,
            "role": principal.role,
            "request_id": current_request_id(),
            "traceparent": current_traceparent(),
        }
        if stateless:
            kwargs["temporary"] = True
            kwargs["on_completion"] = body.on_completion or "delete"
        return kwargs

    # ----------------------------------------------------------------------- read

    async def _require_visible(
        self, principal: Principal, thread_id: uuid.UUID, *, missing_ok: bool = False
    ) -> DictRow | None:
        async with self.pool.connection() as conn:
            thread = await repo.get_thread(conn, thread_id)
        if thread is None:
            if missing_ok:
                return None
            raise NotFound(f"thread {thread_id} not found")
        if not principal.can_see(thread["owner_id"], thread["tenant_id"]):
            raise NotFound(f"thread {thread_id} not found")
        return thread

    async def get_row(
        self, principal: Principal, thread_id: str | uuid.UUID, run_id: str | uuid.UUID
    ) -> dict[str, Any]:
        """The run's row, if it exists on that thread and the principal can see the thread.

        Raises:
            NotFound: otherwise.
        """
        tid = parse_uuid(thread_id, "thread")
        rid = parse_uuid(run_id, "run")
        async with self.pool.connection() as conn:
            row = await repo.get_run(conn, rid)
        if (
            row is None
            or row["thread_id"] != tid
            or not principal.can_see(row["thread_owner_id"], row["thread_tenant_id"])
        ):
            raise NotFound(f"run {run_id} not found")
        return dict(row)

    async def get(
        self, principal: Principal, thread_id: str | uuid.UUID, run_id: str | uuid.UUID
    ) -> Run:
        """Return one run (404 when missing or invisible)."""
        return Run.from_row(await self.get_row(principal, thread_id, run_id))

    async def list_runs(
        self,
        principal: Principal,
        thread_id: str | uuid.UUID,
        *,
        limit: int = 10,
        offset: int = 0,
        status: str | None = None,
    ) -> list[Run]:
        """A thread's runs, newest first (404 when the thread is missing or invisible)."""
        tid = parse_uuid(thread_id, "thread")
        await self._require_visible(principal, tid)
        async with self.pool.connection() as conn:
            rows = await repo.list_runs(conn, tid, limit=limit, offset=offset, status=status)
        return [Run.from_row(dict(r)) for r in rows]

    async def delete(
        self, principal: Principal, thread_id: str | uuid.UUID, run_id: str | uuid.UUID
    ) -> None:
        """Delete a finished run (409 while it is pending or running)."""
        row = await self.get_row(principal, thread_id, run_id)
        if row["status"] in ACTIVE_STATUSES:
            raise Conflict(f"run {run_id} is {row['status']}; cancel it first")
        async with self.pool.connection() as conn:
            await repo.delete_run(conn, row["run_id"])

    # ----------------------------------------------------------------------- cancel

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
            NotFound: the run is missing or invisible.
            Conflict: the run already ended.
        """
        row = await self.get_row(principal, thread_id, run_id)
        if row["status"] not in ACTIVE_STATUSES:
            raise Conflict(f"run {run_id} already ended ({row['status']})")
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
                rows.append(await self.get_row(principal, thread_id, rid))
        else:
            assert thread_id is not None
            tid = parse_uuid(thread_id, "thread")
            await self._require_visible(principal, tid)
            async with self.pool.connection() as conn:
                rows = [dict(r) for r in await repo.active_runs(conn, tid)]
        await self._cancel_rows([r for r in rows if r["status"] in wanted], action)

    async def _cancel_rows(self, rows: list[dict[str, Any]], action: str) -> None:
        # A queued run wrote nothing: if it goes away, its thread's status comes from the
        # thread's checkpoint (read first, so it commits together with the cancel).
        settled: dict[uuid.UUID, str] = {}
        for thread_id in {r["thread_id"] for r in rows if r["status"] == "pending"}:
            state = await self.graph.aget_state(_thread_config(thread_id))
            settled[thread_id] = "interrupted" if state.interrupts else "idle"
        async with self.pool.connection() as conn, conn.transaction():
            for thread_id in sorted({r["thread_id"] for r in rows}):
                await repo.lock_thread(conn, thread_id)  # thread rows first, then runs
            for row in rows:
                if await repo.cancel_pending(conn, row["run_id"], action):
                    await reopen_unstarted_resume(conn, row)
                    status = settled.get(row["thread_id"])
                    if status is not None:
                        await repo.settle_thread_status(conn, row["thread_id"], status)
                else:
                    await repo.request_cancel(conn, row["run_id"], action)
                await repo.notify(conn, repo.EVENTS_CHANNEL, str(row["run_id"]))

    # ----------------------------------------------------------------------- follow

    async def start_seq(self, run_id: uuid.UUID, last_event_id: str | None) -> int:
        """Where a joining stream starts: after `Last-Event-ID`, else at the live edge."""
        if last_event_id is not None and last_event_id.strip():
            try:
                return max(-1, int(last_event_id.strip()))
            except ValueError:
                raise Unprocessable(
                    f"Last-Event-ID must be an integer, got {last_event_id!r}"
                ) from None
        async with self.pool.connection() as conn:
            return await repo.max_seq(conn, run_id)

    def events(
        self, run_id: uuid.UUID, *, after_seq: int = -1, names: Collection[str] | None = None
    ) -> AsyncGenerator[repo.EventRow | None]:
        """Follow a run's events (see `server.runs.events.tail`)."""
        return tail(self.pool, self.hub, run_id, after_seq=after_seq, events=names)

    def outcome(self, run_id: uuid.UUID) -> AsyncGenerator[tuple[str, Any] | None]:
        """Wait for a run's end (see `server.runs.events.wait_until_done`)."""
        return wait_until_done(self.pool, self.hub, run_id)

    async def current_values(self, thread_id: uuid.UUID) -> dict[str, Any]:
        """The thread's latest values with pending interrupts merged in."""
        state = await self.graph.aget_state(_thread_config(thread_id))
        return final_values(state)

    async def cancel_by_id(self, run_id: uuid.UUID, action: str = "interrupt") -> None:
        """Cancel a run the caller already proved it may see (client disconnects)."""
        async with self.pool.connection() as conn:
            row = await repo.get_run(conn, run_id)
        if row is not None and row["status"] in ACTIVE_STATUSES:
            await self._cancel_rows([dict(row)], action)

    async def discard_temporary_thread(self, thread_id: uuid.UUID) -> None:
        """Delete a stateless run's thread, its runs and checkpoints once the run ended."""
        async with self.pool.connection() as conn:
            runs = await repo.list_runs(conn, thread_id, limit=100, offset=0, status=None)
        if any(r["status"] not in TERMINAL_STATUSES for r in runs):
            return
        if not all((r["kwargs"] or {}).get("on_completion") == "delete" for r in runs):
            return
        await self.runtime.checkpointer.adelete_thread(str(thread_id))
        async with self.pool.connection() as conn:
            await repo.delete_thread_row(conn, thread_id)


def _thread_config(thread_id: uuid.UUID) -> RunnableConfig:
    return RunnableConfig(configurable={"thread_id": str(thread_id)})


def spawn_background(coro: Any, what: str) -> None:
    """Run `coro` detached from the request (e.g. cleanup after a client disconnected)."""
    task = asyncio.get_running_loop().create_task(coro)
    _BACKGROUND.add(task)

    def done(t: asyncio.Task[Any]) -> None:
        _BACKGROUND.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.warning("%s failed: %s", what, t.exception())

    task.add_done_callback(done)


_BACKGROUND: set[asyncio.Task[Any]] = set()


__all__ = ["CONFLICT_DETAIL", "RunService", "parse_uuid", "spawn_background"]
