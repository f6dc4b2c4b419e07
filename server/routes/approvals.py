"""The approval queue API (approver and admin only; 403 for users, 404 across tenants).

- `GET /approvals`: pending first; filters `status`, `tenant` (only your own: another
  tenant or `*` is 403, for admins too), `older_than`,
  `newer_than`, `limit`, `offset`.
- `GET /approvals/{approval_id}`: the proposed action, the conversation context (last
  messages, this turn's policy citations, the requester), the orders it touches (status,
  balance, earlier refunds, read now) and the decision, if any.
- `POST /approvals/{approval_id}/decision`: `{"type": "approve"|"edit"|"reject",
  "edited_action"?, "comment"?}`; recorded exactly once (a second decision answers 409), then
  the thread resumes in a run created as the approver.
"""

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, get, post
from litestar.params import FromPath, JSONBody, QueryParameter

from core.domain.orders import PgOrderStore
from core.errors import Forbidden, NotFound
from core.identity import Principal
from graph.runtime import Runtime
from server.approvals import (
    ApprovalRow,
    ApprovalStatus,
    ApprovalStore,
    ensure_pending,
    resume_decisions,
)
from server.auth import PrincipalDep, requires_role
from server.edge import MAX_OFFSET
from server.openapi import api_errors
from server.routes.deps import RuntimeDep
from server.runs.create import RunCreator
from server.runs.models import CommandBody, RunCreate
from server.schemas import ApprovalDecisionIn


def approval_json(row: ApprovalRow, *, detail: bool = False) -> dict[str, Any]:
    """The API view of an approval (the context only in the detail view)."""
    out: dict[str, Any] = {
        "approval_id": str(row["approval_id"]),
        "thread_id": str(row["thread_id"]),
        "run_id": str(row["run_id"]) if row["run_id"] else None,
        "tenant_id": row["tenant_id"],
        "requester_id": row["requester_id"],
        "interrupt_id": row["interrupt_id"],
        "status": row["status"],
        "action": row["action"],
        "decision": row["decision"],
        "decided_by": row["decided_by"],
        "decider_role": row["decider_role"],
        "decided_at": row["decided_at"],
        "comment": row["comment"],
        "resume_run_id": str(row["resume_run_id"]) if row["resume_run_id"] else None,
        "created_at": row["created_at"],
    }
    if detail:
        out["context"] = row["context"]
    return out


async def orders_of(runtime: Runtime, row: ApprovalRow) -> list[dict[str, Any]]:
    """Each order a held refund touches: status, total, refunded, balance, earlier refunds.

    The order's totals are the company's (orders are shared); the refunds listed are only
    those made on threads of the approval's tenant.
    """
    store = PgOrderStore(runtime.pool)
    wanted = []
    for action in row["action"].get("action_requests") or []:
        order_id = (action.get("args") or {}).get("order_id") if isinstance(action, dict) else None
        if isinstance(order_id, str) and order_id not in wanted:
            wanted.append(order_id)
    out: list[dict[str, Any]] = []
    for order_id in wanted:
        order = await store.get_order(order_id)
        refunds = [
            {k: r[k] for k in ("refund_id", "amount", "currency", "created_at", "approved_by")}
            for r in await store.list_refunds(order_id, tenant_id=row["tenant_id"])
        ]
        out.append({"order_id": order_id, "order": order, "refunds": refunds})
    return out


def _approval_uuid(raw: str) -> UUID:
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound(f"approval {raw} not found") from None


async def decide_approval(
    runtime: Runtime,
    principal: Principal,
    approval_id: UUID,
    decision: ApprovalDecisionIn,
) -> tuple[ApprovalRow, dict[str, Any]]:
    """Decide through the runs API's one resume path and return the decided approval.

    The decision is recorded by `server.decisions.bind_resume` in the transaction that
    creates the resume run (as the approver), exactly like a `command.resume`.

    Returns:
        The decided approval and the resume run (as the runs API shows it).

    Raises:
        NotFound: missing or another tenant's.
        Forbidden: not an approver or admin, or the requester approving their own request.
        Conflict: already decided, or no longer waiting for a decision.
        Unprocessable: an invalid edit.
    """
    if not principal.is_approver:
        raise Forbidden("deciding approvals requires role approver or admin")
    store = ApprovalStore(runtime.pool)
    row = await store.get(principal, approval_id)
    ensure_pending(row)
    payload: dict[str, Any] = {"decisions": resume_decisions(row, decision)}
    body = RunCreate(
        command=CommandBody(resume={row["interrupt_id"]: payload}),
        multitask_strategy="reject",
        metadata={"approval_id": str(approval_id)},
    )
    run = await RunCreator(runtime).create(
        principal,
        row["thread_id"],
        body,
        approval_id=approval_id,
        decision_comment=decision.comment,
    )
    decided = await store.get(principal, approval_id)
    return decided, run.public()


class ApprovalsController(Controller):
    """Pending approvals and their decisions."""

    path = "/approvals"
    tags = ["approvals"]
    guards = [requires_role("approver", "admin")]

    @get("/", operation_id="ListApprovals", responses=api_errors(403))
    async def list_approvals(
        self,
        principal: PrincipalDep,
        runtime: RuntimeDep,
        status: Annotated[
            ApprovalStatus | None, QueryParameter(description="Only this status.")
        ] = None,
        tenant: Annotated[
            str | None,
            QueryParameter(description="Your own tenant only; another tenant or `*` answers 403."),
        ] = None,
        older_than: Annotated[
            datetime | None, QueryParameter(description="Created before (ISO 8601).")
        ] = None,
        newer_than: Annotated[
            datetime | None, QueryParameter(description="Created after (ISO 8601).")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500, description="Page size.")] = 50,
        offset: Annotated[
            int, QueryParameter(ge=0, le=MAX_OFFSET, description="Rows to skip.")
        ] = 0,
    ) -> list[dict[str, Any]]:
        """List approvals, pending first (oldest first), then the decided ones."""
        rows = await ApprovalStore(runtime.pool).list(
            principal,
            status=status,
            tenant=tenant,
            older_than=older_than,
            newer_than=newer_than,
            limit=limit,
            offset=offset,
        )
        return [approval_json(r) for r in rows]

    @get("/{approval_id:str}", operation_id="GetApproval", responses=api_errors(403, 404))
    async def get_approval(
        self, principal: PrincipalDep, runtime: RuntimeDep, approval_id: FromPath[str]
    ) -> dict[str, Any]:
        """Return the approval with its context and the orders it touches, as they are now."""
        store = ApprovalStore(runtime.pool)
        row = await store.get(principal, _approval_uuid(approval_id))
        out = approval_json(await store.with_context(runtime, row), detail=True)
        out["orders"] = await orders_of(runtime, row)
        return out

    @post(
        "/{approval_id:str}/decision",
        operation_id="DecideApproval",
        status_code=200,
        responses=api_errors(403, 404, 409, body=True),
    )
    async def decide(
        self,
        principal: PrincipalDep,
        runtime: RuntimeDep,
        approval_id: FromPath[str],
        data: JSONBody[ApprovalDecisionIn],
    ) -> dict[str, Any]:
        """Approve, edit or reject; answers the decided approval and the resume run."""
        row, run = await decide_approval(runtime, principal, _approval_uuid(approval_id), data)
        return {**approval_json(row, detail=True), "run": run}


__all__ = ["ApprovalsController", "approval_json"]
