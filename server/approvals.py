"""The approval queue: pending approval interrupts, decided exactly once by an approver.

Flow:
1. A run ends interrupted with the approval interrupt (`{"action_requests", "review_configs"}`);
   the runs engine calls `sync_pending(...)` inside its final transaction: one row per
   `(thread_id, interrupt_id)` with one `approval_actions` row per held tool call; pending
   approvals whose interrupt no longer waits expire.
2. An approver reads the queue (`ApprovalStore.list` / `get`, own tenant only); the detail
   carries the conversation context (last messages, the turn's policy citations, the order
   with its balance and earlier refunds, the requester).
3. `ApprovalStore.decide` turns the decision into a resume addressed to the approval's
   interrupt and creates the run through `RunService.create`, whose transaction records the
   decision (`server.decisions.bind_resume`): the same path as a `command.resume`.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import ValidationError

from core.domain.types import action_hash
from core.errors import Conflict, Forbidden, NotFound, Unprocessable
from core.identity import Principal
from core.jsonable import to_jsonable
from server.decisions import (
    clear_releases,
    expire_approval,
    is_approval_request,
    released_a_refund,
)
from server.schemas import ApprovalDecisionIn, EditedActionIn

if TYPE_CHECKING:
    from langgraph.types import StateSnapshot

    from core.db.pool import Conn, DbPool
    from graph.runtime import Runtime

logger = logging.getLogger(__name__)

ApprovalStatus = Literal["pending", "approved", "edited", "rejected", "expired"]
APPROVAL_STATUSES: tuple[ApprovalStatus, ...] = (
    "pending",
    "approved",
    "edited",
    "rejected",
    "expired",
)
APPROVAL_NAMESPACE = uuid.UUID("3f6f8f3e-6f0b-5d5e-9a57-0c1a2b7e4d11")
"""Approval ids are uuid5(namespace, "<thread_id>:<interrupt_id>"): stable across replays."""
CONTEXT_MESSAGES = 6
"""How many of the latest messages the approval detail shows."""

_COLUMNS = (
    "approval_id, thread_id, run_id, tenant_id, requester_id, interrupt_id, action, context,"
    " status, decision, decided_by, decider_role, decided_at, comment, resume_run_id, created_at"
)


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
    decider_role: str | None
    decided_at: datetime | None
    comment: str | None
    resume_run_id: uuid.UUID | None
    created_at: datetime


def approval_id_for(thread_id: uuid.UUID | str, interrupt_id: str) -> uuid.UUID:
    """The stable id of the approval for one interrupt of one thread."""
    return uuid.uuid5(APPROVAL_NAMESPACE, f"{thread_id}:{interrupt_id}")


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


def _pending_calls(state: StateSnapshot | None) -> list[dict[str, Any]]:
    """The plan entries the approval node holds, in the order of its action requests."""
    values = state.values if state is not None and isinstance(state.values, dict) else {}
    return [
        c
        for c in values.get("plan") or []
        if isinstance(c, dict) and c.get("verdict") == "approve" and c.get("approval") is None
    ]


async def record_pending(
    conn: Conn,
    *,
    run: dict[str, Any],
    thread: dict[str, Any],
    interrupts: list[dict[str, Any]],
    state: StateSnapshot | None = None,
    **_: Any,
) -> list[uuid.UUID]:
    """Record a pending approval, with its actions, for every approval interrupt of a run.

    Idempotent per `(thread_id, interrupt_id)`. Called by the runs engine inside its final
    transaction (and by a resume that finds the row missing); returns the approvals' ids.
    Each action is named by its tool call id (from the held plan of `state`), its arguments
    and their hash: what a decision can later release, and nothing else.

    Args:
        conn: the runs engine's connection (inside its transaction).
        run: the `runs` row (`run_id`, `thread_id`, `tenant_id`, `owner_id`).
        thread: the `threads` row (`tenant_id`, `owner_id`).
        interrupts: `[{"value": ..., "id": ...}]` of the pending interrupts.
        state: the thread's state at the interrupt (the held plan, the context).

    Raises:
        ValueError: an action request that matches no held tool call (never recorded).
    """
    ids: list[uuid.UUID] = []
    thread_id = run.get("thread_id") or thread.get("thread_id")
    tenant_id = thread.get("tenant_id") or run.get("tenant_id")
    # Who asked: a resume run acts for the approval's requester, any other run for its owner.
    requester = (
        (run.get("kwargs") or {}).get("requester_id")
        or run.get("owner_id")
        or thread.get("owner_id")
        or "unknown"
    )
    held = _pending_calls(state)
    for interrupt in interrupts:
        value, interrupt_id = interrupt.get("value"), interrupt.get("id")
        if not is_approval_request(value) or not interrupt_id or thread_id is None:
            continue
        approval_id = approval_id_for(thread_id, str(interrupt_id))
        requests = [a for a in (value or {}).get("action_requests") or [] if isinstance(a, dict)]
        calls = _match_calls(requests, held)
        context = build_context(state, requester) if state is not None else {}
        cur = await conn.execute(
            "INSERT INTO approvals (approval_id, thread_id, run_id, tenant_id, requester_id,"
            " interrupt_id, action, context) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (thread_id, interrupt_id) DO NOTHING RETURNING approval_id",
            (
                approval_id,
                thread_id,
                run.get("run_id"),
                tenant_id,
                requester,
                str(interrupt_id),
                Jsonb(to_jsonable(value)),
                Jsonb(context),
            ),
        )
        if await cur.fetchone() is not None:
            for position, call in enumerate(calls):
                await conn.execute(
                    "INSERT INTO approval_actions (approval_id, position, tool_call_id, name,"
                    " args, args_hash) VALUES (%s, %s, %s, %s, %s, %s)",
                    (
                        approval_id,
                        position,
                        call["call_id"],
                        call["name"],
                        Jsonb(call["args"]),
                        action_hash(call["name"], call["args"]),
                    ),
                )
            logger.info("approval %s pending on thread %s", approval_id, thread_id)
        ids.append(approval_id)
    return ids


def _match_calls(
    requests: list[dict[str, Any]], held: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    if len(requests) != len(held) or any(
        r.get("name") != c.get("name") or r.get("args") != c.get("args")
        for r, c in zip(requests, held, strict=True)
    ):
        raise ValueError("the approval interrupt does not match the held tool calls")
    return held


async def sync_pending(
    conn: Conn,
    *,
    run: dict[str, Any],
    thread: dict[str, Any],
    interrupts: list[dict[str, Any]],
    state: StateSnapshot | None,
) -> None:
    """Make the queue agree with the thread: pending exactly while its interrupt waits.

    Called by the runs engine in every run's final transaction (errors propagate: a run whose
    approvals cannot be recorded is not reported finished). Records the waiting approval
    interrupts; expires pending approvals whose interrupt no longer waits (a new message,
    a command or a rollback moved the thread on); re-opens the decision of a resume run whose
    interrupt still waits (the resume never took effect, nothing was released).
    """
    waiting = {str(i.get("id")) for i in interrupts if i.get("id")}
    thread_id = run.get("thread_id") or thread.get("thread_id")
    if interrupts:
        await record_pending(conn, run=run, thread=thread, interrupts=interrupts, state=state)
    cur = await conn.execute(
        "SELECT approval_id, interrupt_id, status, resume_run_id FROM approvals"
        " WHERE thread_id = %s AND (status = 'pending' OR resume_run_id = %s) FOR UPDATE",
        (thread_id, run.get("run_id")),
    )
    for row in await cur.fetchall():
        still_waiting = row["interrupt_id"] in waiting
        if row["status"] == "pending" and not still_waiting:
            await expire_approval(conn, row["approval_id"], "the thread moved on")
        elif (
            row["status"] not in ("pending", "expired")
            and still_waiting
            and row["resume_run_id"] == run.get("run_id")
        ):
            await reopen(conn, row["approval_id"])


async def reopen(conn: Conn, approval_id: uuid.UUID) -> None:
    """Put a decision that never took effect back in the queue (never one that released)."""
    if await released_a_refund(conn, approval_id):
        logger.warning("approval %s released a refund: it stays decided", approval_id)
        return
    await clear_releases(conn, approval_id)
    await conn.execute(
        "UPDATE approvals SET status = 'pending', decision = NULL, decided_by = NULL,"
        " decider_role = NULL, decider_tenant = NULL, decided_at = NULL, comment = NULL,"
        " resume_run_id = NULL WHERE approval_id = %s",
        (approval_id,),
    )
    logger.warning("approval %s re-opened: its resume did not take effect", approval_id)


async def reopen_unstarted_resume(conn: Conn, run: dict[str, Any]) -> None:
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
        self,
        principal: Principal,
        *,
        status: ApprovalStatus | None = None,
        tenant: str | None = None,
        older_than: datetime | None = None,
        newer_than: datetime | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> list[ApprovalRow]:
        """List approvals, pending first (oldest first), then decided (newest decision first).

        Args:
            principal: approvers and admins see their own tenant, nobody another's.
            status: only this status.
            tenant: accepted only as the caller's own tenant.
            older_than: created before this time.
            newer_than: created after this time.
            limit: page size.
            offset: rows to skip.

        Raises:
            Forbidden: asking for another tenant.
        """
        parts: list[sql.Composable] = [sql.SQL("tenant_id = %s")]
        params: list[Any] = [principal.tenant_id]
        if tenant not in (None, principal.tenant_id):
            raise Forbidden("approvals are listed for your own tenant only")
        for clause, value in (
            ("status = %s", status),
            ("created_at < %s", older_than),
            ("created_at > %s", newer_than),
        ):
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

    async def get(
        self,
        principal: Principal,
        approval_id: uuid.UUID,
        *,
        conn: Conn | None = None,
        lock: bool = False,
    ) -> ApprovalRow:
        """Return an approval the principal may see.

        Raises:
            NotFound: missing or in another tenant (whatever the role).
        """
        query = f"SELECT {_COLUMNS} FROM approvals WHERE approval_id = %s" + (  # noqa: S608
            " FOR UPDATE" if lock else ""
        )
        if conn is not None:
            row = await (await conn.execute(query, (approval_id,))).fetchone()
        else:
            async with self._pool.connection() as own:
                row = await (await own.execute(query, (approval_id,))).fetchone()
        if row is None or row["tenant_id"] != principal.tenant_id:
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


def ensure_pending(row: ApprovalRow) -> None:
    """Refuse (409) an approval that was already decided."""
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
    "ensure_pending",
    "is_approval_request",
    "record_pending",
    "reopen",
    "reopen_unstarted_resume",
    "resume_decisions",
    "sync_pending",
]
