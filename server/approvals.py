"""The approval queue: pending approval interrupts, decided exactly once by an approver.

Flow:
1. A run ends interrupted with the approval interrupt (`{"action_requests", "review_configs"}`);
   the runs engine calls `record_pending(conn, run=..., thread=..., interrupts=[...])` inside its
   final transaction. One row per `(thread_id, interrupt_id)`: replays are no-ops.
2. An approver reads the queue (`ApprovalStore.list` / `get`); the detail carries the
   conversation context (last messages, the policy chunks retrieved in that turn, requester),
   captured from the thread's state while the approval is pending.
3. `ApprovalStore.decide` locks the row, refuses a second decision (409), validates the
   decision (an edit keeps the tool and must pass its argument schema), then creates the resume
   run through `RunService.create` with the approver's principal and
   `command={"resume": {"decisions": [...]}}`, and records who decided, when and why, in the
   same transaction as the lock. If the run cannot be created, nothing is recorded.

A resume sent straight to the runs API can be recorded with `record_resume(...)` (for the runs
engine to call inside its create transaction); otherwise `decide` answers 409 once the
interrupt is no longer waiting.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

from psycopg import AsyncConnection, sql
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from server.auth import Principal
from server.errors import Conflict, Forbidden, NotFound, Unavailable, Unprocessable
from server.schemas import ApprovalDecisionIn, EditedActionIn
from server.state_view import to_jsonable
from steward.observability.metrics import record_approval_decision

if TYPE_CHECKING:
    from langgraph.types import StateSnapshot

    from steward.db.pool import DbPool
    from steward.runtime import Runtime

logger = logging.getLogger(__name__)

ApprovalStatus = Literal["pending", "approved", "edited", "rejected"]
APPROVAL_STATUSES: tuple[ApprovalStatus, ...] = ("pending", "approved", "edited", "rejected")
_STATUS_OF = {"approve": "approved", "edit": "edited", "reject": "rejected"}
APPROVAL_NAMESPACE = uuid.UUID("3f6f8f3e-6f0b-5d5e-9a57-0c1a2b7e4d11")
"""Approval ids are uuid5(namespace, "<thread_id>:<interrupt_id>"): stable across replays."""
CONTEXT_MESSAGES = 6
"""How many of the latest messages the approval detail shows."""

_COLUMNS = (
    "approval_id, thread_id, run_id, tenant_id, requester_id, interrupt_id, action, context,"
    " status, decision, decided_by, decided_at, comment, resume_run_id, created_at"
)

Conn = AsyncConnection[DictRow]


class ApprovalRow(TypedDict):
    """One row of `approvals`."""

    approval_id: uuid.UUID
    thread_id: uuid.UUID
    run_id: uuid.UUID | None
    tenant_id: str
    requester_id: str
    interrupt_id: str
    action: dict[str, Any]
    context: dict[str, Any]
    status: ApprovalStatus
    decision: dict[str, Any] | None
    decided_by: str | None
    decided_at: datetime | None
    comment: str | None
    resume_run_id: uuid.UUID | None
    created_at: datetime


def approval_id_for(thread_id: uuid.UUID | str, interrupt_id: str) -> uuid.UUID:
    """The stable id of the approval for one interrupt of one thread."""
    return uuid.uuid5(APPROVAL_NAMESPACE, f"{thread_id}:{interrupt_id}")


def is_approval_request(value: Any) -> bool:
    """True for the approval node's interrupt payload (agent-chat-ui HITL shape)."""
    return isinstance(value, dict) and isinstance(value.get("action_requests"), list)


def _message_view(message: Any) -> dict[str, Any]:
    data = to_jsonable(message)
    if not isinstance(data, dict):
        return {"type": "unknown", "content": data}
    keep = ("type", "content", "name", "id", "tool_calls", "tool_call_id", "status")
    return {k: data[k] for k in keep if data.get(k) not in (None, [], "")}


def build_context(snapshot: StateSnapshot, requester_id: str) -> dict[str, Any]:
    """What a reviewer needs: the last messages, this turn's policy citations, the requester."""
    values = snapshot.values if isinstance(snapshot.values, dict) else {}
    messages = list(values.get("messages") or [])[-CONTEXT_MESSAGES:]
    citations = [
        {k: chunk.get(k) for k in ("id", "title", "source", "score")}
        for chunk in values.get("retrieved") or []
        if isinstance(chunk, dict)
    ]
    return {
        "requester": requester_id,
        "messages": [_message_view(m) for m in messages],
        "citations": citations,
        "checkpoint_id": (snapshot.config.get("configurable") or {}).get("checkpoint_id"),
    }


async def record_pending(
    conn: Conn, *, run: dict[str, Any], thread: dict[str, Any],
    interrupts: list[dict[str, Any]], state: StateSnapshot | None = None, **_: Any,
) -> list[uuid.UUID]:
    """Record a pending approval for every approval interrupt of a run that ended interrupted.

    Idempotent per `(thread_id, interrupt_id)`. Called by the runs engine inside its final
    transaction; returns the ids of the approvals that now exist for these interrupts.

    Args:
        conn: the runs engine's connection (inside its transaction).
        run: the `runs` row (`run_id`, `thread_id`, `tenant_id`, `owner_id`).
        thread: the `threads` row (`tenant_id`, `owner_id`).
        interrupts: `[{"value": ..., "id": ...}]` of the pending interrupts.
        state: the thread's state, if the caller has it (captures the context now).
    """
    ids: list[uuid.UUID] = []
    thread_id = run.get("thread_id") or thread.get("thread_id")
    tenant_id = thread.get("tenant_id") or run.get("tenant_id")
    requester = run.get("owner_id") or thread.get("owner_id") or "unknown"
    for interrupt in interrupts:
        value, interrupt_id = interrupt.get("value"), interrupt.get("id")
        if not is_approval_request(value) or not interrupt_id or thread_id is None:
            continue
        approval_id = approval_id_for(thread_id, str(interrupt_id))
        context = build_context(state, requester) if state is not None else {}
        await conn.execute(
            "INSERT INTO approvals (approval_id, thread_id, run_id, tenant_id, requester_id,"
            " interrupt_id, action, context) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (thread_id, interrupt_id) DO NOTHING",
            (approval_id, thread_id, run.get("run_id"), tenant_id, requester,
             str(interrupt_id), Jsonb(to_jsonable(value)), Jsonb(context)),
        )
        ids.append(approval_id)
        logger.info("approval %s pending on thread %s", approval_id, thread_id)
    return ids


async def record_resume(
    conn: Conn, *, principal: Principal, thread_id: uuid.UUID, resume: Any,
    run_id: uuid.UUID | None = None,
) -> uuid.UUID | None:
    """Record a decision sent straight to the runs API (`command.resume`) on the queue.

    For the runs engine to call inside `RunService.create`'s transaction, after its checks.
    Returns the decided approval's id, or None when the thread has no pending approval.

    A row being decided through `/approvals` right now is locked and skipped (no deadlock with
    `ApprovalStore.decide`, which creates its run while holding that lock).
    """
    decisions = resume.get("decisions") if isinstance(resume, dict) else None
    first = decisions[0] if isinstance(decisions, list) and decisions else None
    kind = first.get("type") if isinstance(first, dict) else None
    if kind not in _STATUS_OF:
        return None
    cur = await conn.execute(
        f"SELECT {_COLUMNS} FROM approvals WHERE thread_id = %s AND status = 'pending'"  # noqa: S608
        " ORDER BY created_at DESC LIMIT 1 FOR UPDATE SKIP LOCKED",
        (thread_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    comment = first.get("message") if isinstance(first, dict) else None
    await conn.execute(
        "UPDATE approvals SET status = %s, decision = %s, decided_by = %s, decided_at = now(),"
        " comment = %s, resume_run_id = %s WHERE approval_id = %s AND status = 'pending'",
        (_STATUS_OF[kind], Jsonb(to_jsonable(resume)), principal.user_id, comment, run_id,
         row["approval_id"]),
    )
    record_approval_decision(kind, (datetime.now(UTC) - row["created_at"]).total_seconds())
    return cast(uuid.UUID, row["approval_id"])


def resume_decisions(row: ApprovalRow, decision: ApprovalDecisionIn) -> list[dict[str, Any]]:
    """Turn a reviewer's decision into the graph's resume decisions (one per held action).

    Raises:
        Unprocessable: an edit of several actions at once, of another tool, or with arguments
            the tool's schema refuses.
    """
    from graph.tools import TOOLS

    actions = [a for a in row["action"].get("action_requests", []) if isinstance(a, dict)]
    if not actions:
        raise Unprocessable("this approval holds no action")
    message = {"message": decision.comment} if decision.comment else {}
    if decision.type != "edit":
        return [{"type": decision.type, **message} for _ in actions]
    edited = decision.edited_action
    assert edited is not None  # checked by the model
    if len(actions) != 1:
        raise Unprocessable("an edit decides a single action; this approval holds several")
    held = actions[0]["name"]
    if edited.name != held:
        raise Unprocessable(f"an edit may change the arguments of {held}, not the tool")
    spec = TOOLS.get(held)
    if spec is None:
        raise Unprocessable(f"unknown tool {held!r}")
    try:
        args = spec.args_model.model_validate(edited.args).model_dump(mode="json")
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'args'}: {e['msg']}" for e in exc.errors()
        )
        raise Unprocessable(f"edited_action.args: {problems}") from exc
    return [{"type": "edit", "edited_action": {"name": held, "args": args}, **message}]


class ApprovalStore:
    """Read and decide approvals on behalf of a principal (approver or admin)."""

    def __init__(self, pool: DbPool) -> None:
        self._pool = pool

    async def list(
        self, principal: Principal, *, status: ApprovalStatus | None = None,
        tenant: str | None = None, older_than: datetime | None = None,
        newer_than: datetime | None = None, limit: int = 50, offset: int = 0,
    ) -> list[ApprovalRow]:
        """List approvals, pending first (oldest first), then decided (newest decision first).

        Args:
            principal: approvers see their tenant; admins may name another (`tenant`, or `*`).
            status: only this status.
            tenant: admins only.
            older_than: created before this time.
            newer_than: created after this time.
            limit: page size.
            offset: rows to skip.

        Raises:
            Forbidden: a non-admin asking for another tenant.
        """
        parts: list[sql.Composable] = []
        params: list[Any] = []
        if tenant not in (None, principal.tenant_id) and not principal.is_admin:
            raise Forbidden("only admins may list another tenant's approvals")
        if tenant != "*":
            parts.append(sql.SQL("tenant_id = %s"))
            params.append(tenant or principal.tenant_id)
        for clause, value in (("status = %s", status), ("created_at < %s", older_than),
                              ("created_at > %s", newer_than)):
            if value is not None:
                parts.append(sql.SQL(clause))
                params.append(value)
        where = sql.SQL(" AND ").join(parts) if parts else sql.SQL("TRUE")
        query = sql.SQL(
            "SELECT {cols} FROM approvals WHERE {where} ORDER BY (status = 'pending') DESC,"
            " CASE WHEN status = 'pending' THEN created_at END ASC,"
            " decided_at DESC, approval_id LIMIT %s OFFSET %s"
        ).format(cols=sql.SQL(_COLUMNS), where=where)
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, [*params, limit, offset])
            rows = await cur.fetchall()
        return [cast(ApprovalRow, r) for r in rows]

    async def get(self, principal: Principal, approval_id: uuid.UUID, *,
                  any_tenant_for_admin: bool = True, conn: Conn | None = None,
                  lock: bool = False) -> ApprovalRow:
        """Return an approval the principal may see.

        Raises:
            NotFound: missing or in another tenant (admins may read any tenant's).
        """
        query = f"SELECT {_COLUMNS} FROM approvals WHERE approval_id = %s" + (  # noqa: S608
            " FOR UPDATE" if lock else ""
        )
        if conn is not None:
            row = await (await conn.execute(query, (approval_id,))).fetchone()
        else:
            async with self._pool.connection() as own:
                row = await (await own.execute(query, (approval_id,))).fetchone()
        cross_ok = any_tenant_for_admin and principal.is_admin
        if row is None or (row["tenant_id"] != principal.tenant_id and not cross_ok):
            raise NotFound(f"approval {approval_id} not found")
        return cast(ApprovalRow, row)

    async def with_context(self, runtime: Runtime, row: ApprovalRow) -> ApprovalRow:
        """Capture the conversation context of a pending approval that has none yet."""
        if row["context"] or row["status"] != "pending":
            return row
        snapshot = await runtime.graph.aget_state(
            {"configurable": {"thread_id": str(row["thread_id"])}}
        )
        if row["interrupt_id"] not in {i.id for i in snapshot.interrupts}:
            return row
        context = build_context(snapshot, row["requester_id"])
        async with self._pool.connection() as conn:
            await conn.execute(
                "UPDATE approvals SET context = %s WHERE approval_id = %s"
                " AND context = '{}'::jsonb",
                (Jsonb(context), row["approval_id"]),
            )
        return {**row, "context": context}

    async def decide(
        self, runtime: Runtime, principal: Principal, approval_id: uuid.UUID,
        decision: ApprovalDecisionIn,
    ) -> tuple[ApprovalRow, dict[str, Any]]:
        """Record the decision exactly once and start the resume run as the approver.

        Returns:
            The decided approval and the resume run (as the runs API shows it).

        Raises:
            NotFound: missing or another tenant's (also for admins: the run runs in-tenant).
            Forbidden: the principal is not an approver or admin.
            Conflict: already decided, or no longer waiting for a decision.
            Unprocessable: an invalid edit.
        """
        if not principal.is_approver:
            raise Forbidden("deciding approvals requires role approver or admin")
        try:
            from server.runs.models import CommandBody, RunCreate
            from server.runs.service import RunService
        except ImportError as exc:  # pragma: no cover - the runs engine ships with the app
            raise Unavailable("the runs engine is not available") from exc

        row = await self.get(principal, approval_id, any_tenant_for_admin=False)
        _ensure_pending(row)
        row = await self.with_context(runtime, row)
        snapshot = await runtime.graph.aget_state(
            {"configurable": {"thread_id": str(row["thread_id"])}}
        )
        waiting = {i.id for i in snapshot.interrupts}
        decisions = resume_decisions(row, decision)
        if row["interrupt_id"] not in waiting:
            raise Conflict(
                f"approval {approval_id} is no longer waiting for a decision (the thread moved on)"
            )
        payload: dict[str, Any] = {"decisions": decisions}
        resume: Any = payload if len(waiting) == 1 else {row["interrupt_id"]: payload}
        body = RunCreate(
            command=CommandBody(resume=resume), multitask_strategy="reject",
            metadata={"approval_id": str(approval_id)},
        )
        async with self._pool.connection() as conn, conn.transaction():
            locked = await self.get(principal, approval_id, any_tenant_for_admin=False,
                                    conn=conn, lock=True)
            _ensure_pending(locked)
            run = await RunService(runtime).create(principal, row["thread_id"], body)
            cur = await conn.execute(
                f"UPDATE approvals SET status = %s, decision = %s, decided_by = %s,"  # noqa: S608
                f" decided_at = now(), comment = %s, resume_run_id = %s"
                f" WHERE approval_id = %s AND status = 'pending' RETURNING {_COLUMNS}",
                (_STATUS_OF[decision.type], Jsonb(payload), principal.user_id,
                 decision.comment, uuid.UUID(str(run.run_id)), approval_id),
            )
            decided = await cur.fetchone()
        if decided is None:  # pragma: no cover - the row lock makes this unreachable
            raise Conflict(f"approval {approval_id} was decided concurrently")
        record_approval_decision(
            decision.type, (decided["decided_at"] - decided["created_at"]).total_seconds()
        )
        logger.info("approval %s %s by %s; resume run %s", approval_id,
                    _STATUS_OF[decision.type], principal.user_id, run.run_id)
        return cast(ApprovalRow, decided), run.model_dump(mode="json")


def _ensure_pending(row: ApprovalRow) -> None:
    if row["status"] != "pending":
        when = row["decided_at"].isoformat() if row["decided_at"] else "earlier"
        raise Conflict(
            f"approval {row['approval_id']} was already {row['status']} by "
            f"{row['decided_by']} at {when}"
        )


__all__ = [
    "APPROVAL_STATUSES",
    "ApprovalDecisionIn",
    "ApprovalRow",
    "ApprovalStatus",
    "ApprovalStore",
    "EditedActionIn",
    "approval_id_for",
    "build_context",
    "is_approval_request",
    "record_pending",
    "record_resume",
    "resume_decisions",
]
