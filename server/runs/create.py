"""Creating runs: the transaction that queues a run (the checks it passes: `admission`).

`RunCreator.create` is the only way runs come to exist (the HTTP routes and the approvals
module both use it). It inserts a `pending` run inside a transaction that locks the thread row
and applies the multitask strategy against the thread's active runs; the workers of every
replica then race for it in Postgres.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import orjson
from langgraph.types import StateSnapshot
from psycopg.rows import DictRow

from core.errors import Conflict, Forbidden, NotFound, Unprocessable
from core.guardrails.serde import redact_user_input
from core.identity import Principal
from core.jsonable import dumps
from graph.runtime import Runtime
from server import threads_repo
from server.approvals import record_pending, reopen_unstarted_resume
from server.assistants_repo import AssistantsRepo
from server.decisions import BoundResume, bind_resume, is_approval_request
from server.runs import repo
from server.runs.admission import (
    check_budget,
    check_nodes,
    client_config,
    run_kwargs,
    state_config,
    thread_uuid,
    with_assistant,
)
from server.runs.conflicts import retry_conflicts
from server.runs.events import events_mode_for
from server.runs.guards import (
    PROTECTED_NODES,
    MessageLimits,
    check_command,
    check_input,
    message_key,
    request_digest,
)
from server.runs.models import Run, RunCreate
from server.runs.queries import RunQueries, thread_config
from server.runs.resolve import RESOLVED_COMMENT, is_resolve, resolution

log = logging.getLogger(__name__)

RESENDABLE_STATUSES = frozenset({"error"})
"""A run whose exact input arrives again right after it ended so answers it (a client retrying
after a failure); while a run is active the multitask strategy decides, as the reference does."""

CONFLICT_DETAIL = (
    "Thread is already running a task. Wait for it to finish or choose a different "
    "multitask strategy."
)


class RunCreator:
    """Creates runs for a principal (a thread it cannot see is a 404).

    Args:
        runtime: the process runtime (pool, graph, checkpointer, settings).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.pool = runtime.pool
        self.graph = runtime.graph
        self.recursion_limit = int(runtime.deps.settings.recursion_limit)
        self.queries = RunQueries(runtime)
        self.assistants = AssistantsRepo(runtime.pool)

    async def create(
        self,
        principal: Principal,
        thread_id: str | uuid.UUID | None,
        body: RunCreate,
        *,
        idempotency_key: str | None = None,
        approval_id: uuid.UUID | None = None,
        decision_comment: str | None = None,
        streamed: bool = False,
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
                    streamed=streamed,
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
        streamed: bool = False,
    ) -> Run:
        """Create a pending run on a thread (or, with `thread_id=None`, a stateless run).

        A resume is bound to the interrupt it answers and, for an approval, records the
        decision in this transaction (`server.decisions.bind_resume`). A request re-sent with
        the same `Idempotency-Key` (or the same message id, or the same input right after
        a run of it failed) is answered with its first run. `streamed`: the request streams
        the run's events (its worker stores them as they come, `events_mode_for`).

        Raises:
            NotFound: the thread or assistant does not exist or is not visible (another
                tenant's assistant included).
            Conflict: `multitask_strategy="reject"` and the thread is busy, or a resume with
                nothing (or something already decided) to resume.
            Forbidden: a user resuming an approval, a requester approving their own request,
                or steering the graph (`command.update`, `command.goto`) without role admin.
            Unprocessable: the run asks for something invalid (unknown node, reserved config,
                an input without a new user message, a reused key with another body).
            TooManyRequests: a budget of the caller (user/day, tenant/month, thread) is spent.
        """
        stateless = thread_id is None
        assistant = await self.assistants.get(principal, body.assistant_id)
        tid = uuid.uuid4() if stateless else thread_uuid(thread_id, body)
        config = client_config(body, tid, principal, self.recursion_limit)
        # The assistant's latest version is copied into the run: a later update or delete of
        # the assistant does not change a run already created.
        config, context = with_assistant(config, body.context, assistant)
        check_nodes(self.graph, body)
        command = body.command
        resolving = is_resolve(command)
        steers = (
            command is not None
            and not resolving
            and (command.update is not None or command.goto is not None)
        )
        if steers and not principal.is_admin:
            raise Forbidden("command.update and command.goto require role admin")
        limits = MessageLimits.of(self.runtime.deps.settings)
        if command is not None:
            check_command(command.update, command.goto, limits)
        if body.input is not None:
            check_input(body.input, limits)
        if not (body.is_resume or resolving):  # a decision on held work is never blocked
            await check_budget(self.runtime, principal, None if stateless else str(tid))
        digest = request_digest(body)
        key = idempotency_key or (None if stateless else message_key(tid, body.input))
        if key is not None:
            async with self.pool.connection() as conn:
                earlier = await repo.run_by_request_key(
                    conn, principal.tenant_id, principal.user_id, key
                )
            if earlier is not None:
                replayed = self._replayed(earlier, digest, tid, stateless)
                if streamed and earlier["events_mode"] == "deferred":
                    async with self.pool.connection() as conn:
                        await repo.want_live(conn, earlier["run_id"])  # now it is streamed
                return replayed

        state = None
        forking = body.start_checkpoint is not None and bool(body.start_checkpoint.checkpoint_id)
        if not stateless and (body.is_resume or resolving or forking):
            # Only a resume, a resolution or a fork needs the state before the run exists
            # (a new input starts from the latest checkpoint, which the graph reads anyway).
            await self.queries.require_visible(principal, tid, missing_ok=True)
            try:
                state = await self.graph.aget_state(state_config(tid, body))
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                raise Conflict(f"the state of thread {tid} cannot be read: {exc}") from exc
            await self._check_fork(tid, body, state)
        if resolving:
            body = body.model_copy(update={"command": resolution(principal, state)})
            command = body.command
            decision_comment = decision_comment or RESOLVED_COMMENT

        run_id = uuid.uuid4()
        kwargs = run_kwargs(
            body, config, principal, stateless, durability=self.runtime.deps.settings.run_durability
        )
        kwargs["context"] = context
        kwargs["assistant_version"] = assistant["version"]
        if kwargs["input"] is not None:
            # The runs table and its events are data at rest too: store no raw PII.
            kwargs["input"] = await asyncio.to_thread(redact_user_input, kwargs["input"])
        patch = orjson.dumps(
            {"graph_id": assistant["graph_id"], "assistant_id": assistant["assistant_id"]}
        ).decode()
        cancels: list[dict[str, Any]] = []
        async with self.pool.connection() as conn, conn.transaction():
            thread = await threads_repo.get_thread(conn, tid, lock=True)
            if thread is None:
                if not (stateless or body.if_not_exists == "create"):
                    raise NotFound(f"thread {tid} not found")
                await threads_repo.insert_thread(
                    conn, tid, tenant_id=principal.tenant_id, owner_id=principal.user_id
                )
                thread = await threads_repo.get_thread(conn, tid, lock=True)
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
                and (stateless or thread["status"] not in ("interrupted", "error"))
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
                assistant_id=assistant["assistant_id"],
                kwargs=dumps(kwargs),
                metadata=dumps(body.metadata or {}),
                multitask_strategy=body.multitask_strategy,
                after_seconds=body.after_seconds,
                request_key=key,
                request_hash=digest,
                events_mode=events_mode_for(kwargs, streamed=streamed),
            )
            if body.multitask_strategy in ("interrupt", "rollback"):
                for other in active:
                    if other["status"] == "pending":
                        await repo.cancel_pending(conn, other["run_id"], body.multitask_strategy)
                        await reopen_unstarted_resume(conn, dict(other))
                    else:
                        await repo.request_cancel(conn, other["run_id"], body.multitask_strategy)
                    cancels.append(dict(other))
            # Writes whose results nobody reads go in one pipeline: one round trip, not 3+.
            # (No `rowcount` may be read in it: in a pipeline it is -1 until a sync.)
            async with conn.pipeline():
                await repo.insert_events(
                    conn, run_id, [(0, "metadata", dumps({"run_id": str(run_id), "attempt": 1}))]
                )
                await threads_repo.mark_thread_busy(conn, tid, patch)
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
            NotFound: nothing is saved under that checkpoint id on this thread (e.g. an id a
                stream showed of a step an `exit` run never saved): the run would start from
                an empty thread.
            Conflict: the checkpoint is not the latest and waits on an interrupt or is about
                to judge, hold or execute tool calls (time travel into a decision).
        """
        start = body.start_checkpoint
        if start is None or not start.checkpoint_id:
            return
        if state.created_at is None:
            raise NotFound(f"checkpoint {start.checkpoint_id} is not saved on this thread")
        latest = await self.graph.aget_state(thread_config(thread_id))
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
