"""The inbox's pages: sign in and out, the queue, one approval, its decision.

Every rule is the API's, through the API's own functions: the queue and the detail read
through `server.approvals.ApprovalStore` (own tenant only: another tenant's approval is
404) with `server.routes.approvals.orders_of`; a decision goes through
`server.routes.approvals.decide_approval`, the function behind
`POST /approvals/{id}/decision` (roles, four eyes, one decision, edit limits, all checked by
`server.decisions.bind_resume` in the transaction that creates the resume run). The pages
only translate form fields into the API's `ApprovalDecisionIn`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from litestar import Controller, Request, Response, get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body, FromPath
from litestar.response import Redirect, Template
from pydantic import ValidationError

from core.errors import NotFound, Unprocessable
from core.identity import Principal
from graph.runtime import Runtime
from server.approvals import ApprovalDecisionIn, ApprovalRow, ApprovalStore, EditedActionIn
from server.auth import PrincipalDep, requires_role
from server.inbox.guard import (
    INBOX_PATH,
    LOGIN_COOKIE,
    SESSION_COOKIE,
    clear_session_cookie,
    is_htmx,
    new_login_token,
    session_guard,
    session_store,
    set_login_cookie,
    set_session_cookie,
    signed_in,
    tokens_match,
)
from server.inbox.pages import LOGIN_PATH, SECURITY_HEADERS, page
from server.inbox.views import (
    STATUS_LABELS,
    actions_of,
    editable_refund,
    message_text,
    queue_item,
    tool_calls_text,
    when,
)
from server.keys import KeyStore
from server.routes.approvals import decide_approval, orders_of
from server.routes.deps import RuntimeDep

logger = logging.getLogger(__name__)

QUEUE_LIMIT = 200
"""How many pending approvals the queue lists (oldest first), and as many decided ones."""
DECIDED_SHOWN = 50
"""How many decided approvals the queue lists (latest decision first)."""
DONE_MESSAGES = {
    "approved": "Approved. The refund is released and the conversation continues.",
    "edited": "Approved with your edits. The edited refund is released.",
    "rejected": "Rejected. The requester's conversation continues with your comment.",
}
"""The confirmation shown after a decision (also after the no-JavaScript redirect)."""
FORM = RequestEncodingType.URL_ENCODED


@dataclass
class SignInForm:
    """The sign-in form: the API key and the form's double-submit token."""

    key: str = ""
    csrf_token: str = ""


@dataclass
class DecisionForm:
    """One of the approve / edit / reject forms."""

    type: str = ""
    comment: str = ""
    amount: str = ""
    reason: str = ""
    csrf_token: str = ""


def approval_uuid(raw: str) -> UUID:
    """The approval id of a path; a malformed one is not found (as on the API)."""
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound(f"approval {raw} not found") from None


def decision_from_form(row: ApprovalRow, form: DecisionForm) -> ApprovalDecisionIn:
    """The API's decision body for a submitted form.

    An edit keeps the held refund's order and changes its amount (and its reason, if given);
    whether that is allowed is decided by the API's rules when the decision is recorded.

    Raises:
        Unprocessable: an unknown decision, an edit of something that is not one refund, or a
            field the API's body refuses (e.g. a comment over 2000 characters).
    """
    if form.type not in ("approve", "edit", "reject"):
        raise Unprocessable("choose approve, edit or reject")
    edited = None
    if form.type == "edit":
        held = editable_refund(row)
        if held is None:
            raise Unprocessable("only an approval of a single refund can be edited here")
        if not form.amount.strip():
            raise Unprocessable("an edit needs the new amount")
        args = {**held, "amount": form.amount.strip()}
        if form.reason.strip():
            args["reason"] = form.reason.strip()
        edited = EditedActionIn(name="issue_refund", args=args)
    try:
        return ApprovalDecisionIn(
            type=form.type,  # type: ignore[arg-type]  # checked above
            edited_action=edited,
            comment=form.comment.strip() or None,
        )
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'form'}: {e['msg']}" for e in exc.errors()
        )
        raise Unprocessable(problems) from exc


async def detail_context(
    runtime: Runtime, principal: Principal, approval_id: UUID
) -> dict[str, Any]:
    """Everything the approval page shows, read as `GET /approvals/{id}` reads it."""
    store = ApprovalStore(runtime.pool)
    row = await store.with_context(runtime, await store.get(principal, approval_id))
    context = row["context"] or {}
    messages = [
        {
            "type": m.get("type", ""),
            "text": message_text(m),
            "tool_calls": tool_calls_text(m),
        }
        for m in context.get("messages") or []
        if isinstance(m, dict)
    ]
    return {
        "approval": row,
        "item": queue_item(row),
        "actions": actions_of(row),
        "refund": editable_refund(row),
        "orders": await orders_of(runtime, row),
        "messages": messages,
        "citations": context.get("citations") or [],
        "requester": context.get("requester") or row["requester_id"],
        "own_request": row["requester_id"] == principal.user_id,
        "decided_at": when(row["decided_at"]),
        "status_label": STATUS_LABELS.get(row["status"], row["status"]),
    }


def _login_page(
    request: Request[Any, Any, Any], *, error: str | None = None, status_code: int = 200
) -> Template:
    token = new_login_token()
    response = page(request, "login.html", status_code=status_code, error=error, login_token=token)
    set_login_cookie(response, request, token)
    return response


class SignInController(Controller):
    """Signing in with an API key and out again (no session needed to reach these)."""

    path = "/"
    include_in_schema = False

    @get("/login", name="inbox_login")
    async def login_form(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """The sign-in form (straight to the queue when already signed in)."""
        if await session_store(request).find(request.cookies.get(SESSION_COOKIE)):
            return Redirect(INBOX_PATH, status_code=303, headers=SECURITY_HEADERS)
        return _login_page(request)

    @post("/login", status_code=303)
    async def login(
        self,
        request: Request[Any, Any, Any],
        key_store: KeyStore,
        data: Annotated[SignInForm, Body(media_type=FORM)],
    ) -> Response[Any]:
        """Check the key as the API does and open a session for an approver or admin."""
        if not tokens_match(data.csrf_token, request.cookies.get(LOGIN_COOKIE)):
            return _login_page(
                request, error="This sign-in form expired. Please try again.", status_code=403
            )
        principal = await key_store.verify(data.key.strip())
        if principal is None:
            return _login_page(
                request,
                error="This API key is not valid: unknown, mistyped or revoked.",
                status_code=401,
            )
        if not principal.is_approver:
            return _login_page(
                request,
                error=(
                    f"The key of {principal.user_id} has the role {principal.role}: only "
                    "approvers and admins review approvals."
                ),
                status_code=403,
            )
        token, _ = await session_store(request).open(principal)
        response = Redirect(INBOX_PATH, status_code=303, headers=SECURITY_HEADERS)
        set_session_cookie(response, request, token)
        return response

    @post("/logout", status_code=303, guards=[session_guard])
    async def logout(self, request: Request[Any, Any, Any]) -> Response[Any]:
        """End the session (CSRF-checked by the guard) and forget the cookie."""
        await session_store(request).close(request.cookies.get(SESSION_COOKIE))
        session = signed_in(request)
        if session is not None:
            logger.info("inbox session closed for %s", session.principal.user_id)
        response = Redirect(LOGIN_PATH, status_code=303, headers=SECURITY_HEADERS)
        clear_session_cookie(response, request)
        return response


class InboxController(Controller):
    """The queue and the decisions, for a signed-in approver or admin of the tenant."""

    path = "/"
    include_in_schema = False
    guards = [session_guard, requires_role("approver", "admin")]

    @get("/", name="inbox")
    async def queue(
        self, request: Request[Any, Any, Any], principal: PrincipalDep, runtime: RuntimeDep
    ) -> Template:
        """Pending approvals (oldest first, with age and amount), then the decided ones."""
        store = ApprovalStore(runtime.pool)
        pending = await store.list(principal, status="pending", limit=QUEUE_LIMIT)
        latest = await store.list(principal, limit=len(pending) + DECIDED_SHOWN)
        now = datetime.now(UTC)
        decided = [r for r in latest if r["status"] != "pending"][:DECIDED_SHOWN]
        return page(
            request,
            "queue.html",
            pending=[queue_item(r, now) for r in pending],
            decided=[queue_item(r, now) for r in decided],
        )

    @get("/approvals/{approval_id:str}", name="inbox_approval")
    async def approval(
        self,
        request: Request[Any, Any, Any],
        principal: PrincipalDep,
        runtime: RuntimeDep,
        approval_id: FromPath[str],
        done: str | None = None,
    ) -> Template:
        """One approval: the action, its orders, the conversation, citations, the decision."""
        context = await detail_context(runtime, principal, approval_uuid(approval_id))
        return page(request, "approval.html", done=DONE_MESSAGES.get(done or ""), **context)

    @post("/approvals/{approval_id:str}/decision", status_code=200)
    async def decide(
        self,
        request: Request[Any, Any, Any],
        principal: PrincipalDep,
        runtime: RuntimeDep,
        approval_id: FromPath[str],
        data: Annotated[DecisionForm, Body(media_type=FORM)],
    ) -> Response[Any]:
        """Record the decision through the API's path, then show the decided approval."""
        aid = approval_uuid(approval_id)
        held = await ApprovalStore(runtime.pool).get(principal, aid)
        row, _ = await decide_approval(runtime, principal, aid, decision_from_form(held, data))
        if not is_htmx(request):
            return Redirect(
                f"{INBOX_PATH}/approvals/{aid}?done={row['status']}",
                status_code=303,
                headers=SECURITY_HEADERS,
            )
        context = await detail_context(runtime, principal, aid)
        return page(
            request,
            "_approval.html",
            done=DONE_MESSAGES.get(row["status"]),
            fragment=True,
            **context,
        )


ROUTES: list[Any] = [SignInController, InboxController]
"""The inbox's controllers, relative to `INBOX_PATH` (mounted by `server.inbox.inbox_router`)."""


__all__ = ["ROUTES", "DecisionForm", "InboxController", "SignInController", "decision_from_form"]
