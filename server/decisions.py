"""The one code path that turns a resume into a recorded decision, bound to its interrupt.

Every resume, whether a client sends `command.resume` to the runs API or an approver posts to
`/approvals/{id}/decision`, goes through `bind_resume` inside `RunService.create`'s
transaction:

1. It names the interrupt it answers: a resume keyed by an interrupt id answers that one; a
   plain resume answers the single waiting interrupt (several waiting: 422). An interrupt that
   is not waiting is a 409.
2. For an approval interrupt it locks the approval row (recording it first if the run that
   raised it has not yet), refuses a decided or expired one (409), checks the decider (an
   approver or admin of the tenant who is not the requester, for a release: 403), validates
   the decisions against the held actions (422), and records who decided, in which role,
   when, what each action released (arguments, order, amount, hash) and the resume run.
3. The run's command is rewritten to `{interrupt_id: payload}`, so LangGraph applies it to
   that interrupt only; the executor checks again that it still waits when the run starts.

Postgres refuses a refund above the threshold unless such a row released exactly it, so
graph state, state writes and resumes can carry a decision but never create one.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb
from pydantic import TypeAdapter, ValidationError

from core.domain.orders import to_cents
from core.domain.types import RefundRefused, action_hash
from core.errors import Conflict, Forbidden, NotFound, Unprocessable
from core.observability.metrics import record_approval_decision
from graph.schemas import Decision, EditDecision, RejectDecision
from graph.tools import TOOLS
from server.edge import check_text

if TYPE_CHECKING:
    from langgraph.types import Interrupt

    from core.db.pool import Conn
    from core.identity import Principal

log = logging.getLogger(__name__)

_DECISIONS = TypeAdapter(list[Decision])
_STATUS_OF = {"approve": "approved", "edit": "edited", "reject": "rejected"}


@dataclass(frozen=True, slots=True)
class BoundResume:
    """What a resume answers: the interrupt, its approval (if any), and the payload."""

    interrupt_id: str
    payload: Any
    approval_id: uuid.UUID | None = None
    requester_id: str | None = None
    """Who asked for the held actions (the approval's requester)."""

    @property
    def command_resume(self) -> dict[str, Any]:
        """The resume as LangGraph gets it: addressed to this interrupt only."""
        return {self.interrupt_id: self.payload}


def is_approval_request(value: Any) -> bool:
    """True for the approval node's interrupt payload (agent-chat-ui HITL shape)."""
    return isinstance(value, dict) and isinstance(value.get("action_requests"), list)


def target_interrupt(resume: Any, waiting: list[Interrupt]) -> tuple[Interrupt, Any]:
    """The waiting interrupt a resume answers, and the payload for it.

    Raises:
        Conflict: nothing waits, or the resume names an interrupt that is not waiting.
        Unprocessable: several interrupts wait and the resume does not say which.
    """
    by_id = {i.id: i for i in waiting}
    if isinstance(resume, dict) and resume and all(_looks_like_id(k) for k in resume):
        if len(resume) != 1:
            raise Unprocessable("a resume answers one interrupt; send one run per interrupt")
        [(interrupt_id, payload)] = resume.items()
        if interrupt_id not in by_id:
            raise Conflict(f"interrupt {interrupt_id} is not waiting for an answer")
        return by_id[interrupt_id], payload
    if not waiting:
        raise Conflict("the thread has no pending interrupt to resume")
    if len(waiting) > 1:
        raise Unprocessable(
            "several interrupts are waiting: key the resume by interrupt id "
            f"({', '.join(sorted(by_id))})"
        )
    return waiting[0], resume


def _looks_like_id(key: Any) -> bool:
    return isinstance(key, str) and len(key) == 32 and all(c in "0123456789abcdef" for c in key)


def parse_decisions(actions: list[dict[str, Any]], payload: Any) -> list[Decision]:
    """Validate `{"decisions": [...]}`: one decision per held action, edits keep the tool.

    Raises:
        Unprocessable: the payload is not a valid answer to these actions.
    """
    if not isinstance(payload, dict) or set(payload) != {"decisions"}:
        raise Unprocessable('command.resume must be {"decisions": [...]} for an approval')
    try:
        decisions = _DECISIONS.validate_python(payload["decisions"])
    except ValidationError as exc:
        raise Unprocessable(f"command.resume.decisions: {_problems(exc)}") from exc
    if len(decisions) != len(actions):
        raise Unprocessable(
            f"command.resume.decisions: {len(actions)} action(s) wait for a decision, "
            f"{len(decisions)} decision(s) given"
        )
    for action, decision in zip(actions, decisions, strict=True):
        if isinstance(decision, EditDecision):
            if decision.edited_action.name != action["name"]:
                raise Unprocessable(
                    f"an edit may change the arguments of {action['name']}, not the tool"
                )
            spec = TOOLS.get(action["name"])
            if spec is None:
                raise Unprocessable(f"unknown tool {action['name']!r}")
            try:
                spec.args_model.model_validate(decision.edited_action.args)
            except ValidationError as exc:
                raise Unprocessable(f"edited_action.args: {_problems(exc)}") from exc
            original = (action.get("args") or {}).get("order_id")
            if original is not None and decision.edited_action.args.get("order_id") != original:
                raise Unprocessable(
                    f"an edit may change the amount or the reason, not the order ({original})"
                )
    return decisions


def released_args(name: str, args: dict[str, Any], decision: Decision) -> dict[str, Any] | None:
    """The canonical arguments a decision releases (None for a rejection)."""
    if isinstance(decision, RejectDecision):
        return None
    raw = decision.edited_action.args if isinstance(decision, EditDecision) else args
    spec = TOOLS.get(name)
    return spec.args_model.model_validate(raw).model_dump(mode="json") if spec else dict(raw)


def approval_status(decisions: list[Decision]) -> str:
    """`edited` if any edit, else `approved` if any approval, else `rejected`."""
    kinds = {d.type for d in decisions}
    return "edited" if "edit" in kinds else "approved" if "approve" in kinds else "rejected"


async def bind_resume(
    conn: Conn,
    *,
    principal: Principal,
    thread_id: uuid.UUID,
    resume: Any,
    waiting: list[Interrupt],
    run_id: uuid.UUID,
    approval_id: uuid.UUID | None = None,
    comment: str | None = None,
) -> BoundResume:
    """Bind a resume to its interrupt and, for an approval, record the decision (see module).

    Called inside the run-creating transaction, after the thread row is locked.
    """
    check_text(resume, "command.resume")
    check_text(comment, "comment")
    interrupt, payload = target_interrupt(resume, waiting)
    if not is_approval_request(interrupt.value):
        if approval_id is not None:
            raise Conflict(f"approval {approval_id} is not waiting for a decision")
        return BoundResume(interrupt_id=interrupt.id, payload=payload)
    row = await _lock_approval(conn, thread_id, interrupt.id)
    if row is None:
        raise Conflict("the approval for this interrupt is not recorded yet; retry in a moment")
    if approval_id is not None and row["approval_id"] != approval_id:
        raise Conflict(f"approval {approval_id} is no longer waiting for a decision")
    if row["tenant_id"] != principal.tenant_id:
        raise NotFound(f"approval {row['approval_id']} not found")
    if not principal.is_approver:
        raise Forbidden("resuming an approval requires role approver or admin")
    if row["status"] != "pending":
        when = row["decided_at"].isoformat() if row["decided_at"] else "earlier"
        by = f" by {row['decided_by']}" if row["decided_by"] else ""
        raise Conflict(f"approval {row['approval_id']} was already {row['status']}{by} at {when}")
    actions = await _actions(conn, row["approval_id"])
    if not actions:
        raise Conflict(f"approval {row['approval_id']} holds no recorded action")
    decisions = parse_decisions(actions, payload)
    if any(d.type != "reject" for d in decisions) and principal.user_id == row["requester_id"]:
        raise Forbidden(
            "four eyes: an action is released by a person other than the one who asked for it"
        )
    for action, decision in zip(actions, decisions, strict=True):
        await _record_action(conn, row["approval_id"], action, decision)
    if comment is None:
        comment = next((d.message for d in decisions if d.message), None)
    status = approval_status(decisions)
    await conn.execute(
        "UPDATE approvals SET status = %s, decision = %s, decided_by = %s, decider_role = %s,"
        " decider_tenant = %s, decided_at = now(), comment = %s, resume_run_id = %s"
        " WHERE approval_id = %s AND status = 'pending'",
        (
            status,
            Jsonb(payload),
            principal.user_id,
            principal.role,
            principal.tenant_id,
            comment,
            run_id,
            row["approval_id"],
        ),
    )
    record_approval_decision(decisions[0].type, _age_s(row["created_at"]))
    log.info(
        "approval %s %s by %s (%s); resume run %s",
        row["approval_id"],
        status,
        principal.user_id,
        principal.role,
        run_id,
    )
    return BoundResume(
        interrupt_id=interrupt.id,
        payload=payload,
        approval_id=row["approval_id"],
        requester_id=row["requester_id"],
    )


async def _lock_approval(conn: Conn, thread_id: uuid.UUID, interrupt_id: str) -> Any:
    cur = await conn.execute(
        "SELECT approval_id, tenant_id, requester_id, status, decided_by, decided_at,"
        " created_at FROM approvals WHERE thread_id = %s AND interrupt_id = %s FOR UPDATE",
        (thread_id, interrupt_id),
    )
    return await cur.fetchone()


async def _actions(conn: Conn, approval_id: uuid.UUID) -> list[dict[str, Any]]:
    cur = await conn.execute(
        "SELECT position, tool_call_id, name, args FROM approval_actions"
        " WHERE approval_id = %s ORDER BY position",
        (approval_id,),
    )
    return [dict(r) for r in await cur.fetchall()]


async def _record_action(
    conn: Conn, approval_id: uuid.UUID, action: dict[str, Any], decision: Decision
) -> None:
    args = released_args(action["name"], action["args"], decision)
    order_id = amount_cents = digest = None
    if args is not None:
        digest = action_hash(action["name"], args)
        if action["name"] == "issue_refund":
            order_id = args.get("order_id")
            try:
                amount_cents = to_cents(args.get("amount", ""))
            except RefundRefused as exc:
                raise Unprocessable(f"edited_action.args.amount: {exc.message}") from exc
    await conn.execute(
        "UPDATE approval_actions SET decision = %s, released_args = %s, released_args_hash = %s,"
        " released_order_id = %s, released_amount_cents = %s"
        " WHERE approval_id = %s AND position = %s",
        (
            decision.type,
            Jsonb(args) if args is not None else None,
            digest,
            order_id,
            amount_cents,
            approval_id,
            action["position"],
        ),
    )


async def released_a_refund(conn: Conn, approval_id: uuid.UUID) -> bool:
    """Whether a refund row names this approval (it then stays decided, whatever happens)."""
    cur = await conn.execute("SELECT 1 FROM refunds WHERE approval_id = %s LIMIT 1", (approval_id,))
    return await cur.fetchone() is not None


async def clear_releases(conn: Conn, approval_id: uuid.UUID) -> None:
    """Forget what an approval's actions released (an expired or re-opened approval)."""
    await conn.execute(
        "UPDATE approval_actions SET decision = NULL, released_args = NULL,"
        " released_args_hash = NULL, released_order_id = NULL, released_amount_cents = NULL"
        " WHERE approval_id = %s",
        (approval_id,),
    )


async def expire_approval(conn: Conn, approval_id: uuid.UUID, why: str) -> None:
    """Mark an approval whose interrupt no longer waits as `expired` (nothing was released)."""
    if await released_a_refund(conn, approval_id):
        log.warning("approval %s released a refund: it stays decided", approval_id)
        return
    await conn.execute(
        "UPDATE approvals SET status = 'expired', decided_at = coalesce(decided_at, now()),"
        " comment = coalesce(comment, %s) WHERE approval_id = %s",
        (why, approval_id),
    )
    await clear_releases(conn, approval_id)
    log.info("approval %s expired: %s", approval_id, why)


def _age_s(created_at: datetime) -> float:
    return max(0.0, (datetime.now(UTC) - created_at).total_seconds())


def _problems(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
    )


__all__ = [
    "BoundResume",
    "approval_status",
    "bind_resume",
    "clear_releases",
    "expire_approval",
    "is_approval_request",
    "parse_decisions",
    "released_a_refund",
    "released_args",
    "target_interrupt",
]
