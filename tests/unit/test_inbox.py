"""The inbox's pure parts: what the pages show, form → API decision, form edge checks, assets."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from core.errors import Unprocessable
from server.approvals import ApprovalRow
from server.edge import check_form
from server.inbox.guard import tokens_match
from server.inbox.pages import STATIC_DIR, template_environment
from server.inbox.routes import DecisionForm, decision_from_form
from server.inbox.views import age, decided_amount, money, queue_item, requested_amount

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


def row(status: str = "pending", **over: Any) -> ApprovalRow:
    base: dict[str, Any] = {
        "approval_id": uuid.uuid4(),
        "thread_id": uuid.uuid4(),
        "run_id": None,
        "tenant_id": "acme",
        "requester_id": "alice",
        "interrupt_id": "a" * 32,
        "action": {
            "action_requests": [
                {
                    "name": "issue_refund",
                    "args": {"order_id": "LS-10007", "amount": 700, "reason": "broken"},
                    "description": "refund",
                }
            ]
        },
        "context": {},
        "status": status,
        "decision": None,
        "decided_by": None,
        "decider_role": None,
        "decided_at": None,
        "comment": None,
        "resume_run_id": None,
        "created_at": NOW - timedelta(minutes=7),
    }
    base.update(over)
    return base  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(5, "just now"), (61, "1 min"), (3599, "59 min"), (7200, "2 h"), (3 * 86_400, "3 d")],
)
def test_age_in_the_largest_whole_unit(seconds: int, shown: str) -> None:
    assert age(NOW - timedelta(seconds=seconds), NOW) == shown


def test_amounts_asked_and_released() -> None:
    assert money(700) == "700.00" and money("12.5") == "12.50" and money("abc") == "abc"
    assert requested_amount(row()) == "700.00"
    assert decided_amount(row()) is None
    assert decided_amount(row("approved")) == "700.00"
    assert decided_amount(row("rejected")) is None
    edit = {"type": "edit", "edited_action": {"name": "issue_refund", "args": {"amount": "650"}}}
    assert decided_amount(row("edited", decision={"decisions": [edit]})) == "650.00"


def test_queue_item_shows_age_amount_and_decider() -> None:
    item = queue_item(
        row("rejected", decided_by="paula", decider_role="approver", decided_at=NOW, comment="no"),
        NOW,
    )
    assert (item.age, item.orders, item.amount, item.requested) == (
        "7 min",
        "LS-10007",
        "-",
        "700.00",
    )
    assert (item.status_label, item.decided_by, item.decided) == (
        "Rejected",
        "paula",
        "2026-12-03 12:00:00 UTC",
    )


def test_an_edit_keeps_the_order_and_changes_the_amount() -> None:
    decision = decision_from_form(row(), DecisionForm(type="edit", amount=" 650.00 ", comment=""))
    assert decision.type == "edit" and decision.comment is None
    assert decision.edited_action is not None
    assert decision.edited_action.args == {
        "order_id": "LS-10007",
        "amount": "650.00",
        "reason": "broken",
    }
    reject = decision_from_form(row(), DecisionForm(type="reject", comment=" too late "))
    assert (reject.type, reject.comment, reject.edited_action) == ("reject", "too late", None)


@pytest.mark.parametrize(
    ("form", "problem"),
    [
        (DecisionForm(type="steal"), "approve, edit or reject"),
        (DecisionForm(type="edit", amount=""), "new amount"),
        (DecisionForm(type="approve", comment="x" * 2001), "comment"),
    ],
)
def test_forms_the_api_body_refuses(form: DecisionForm, problem: str) -> None:
    with pytest.raises(Unprocessable, match=problem):
        decision_from_form(row(), form)


def test_only_a_single_refund_is_editable_here() -> None:
    other = row(action={"action_requests": [{"name": "get_order", "args": {}}]})
    with pytest.raises(Unprocessable, match="single refund"):
        decision_from_form(other, DecisionForm(type="edit", amount="5"))


def test_form_bodies_refuse_nul_characters() -> None:
    check_form(b"type=reject&comment=fine+words&csrf_token=abc")
    with pytest.raises(Unprocessable, match="form field 'comment'"):
        check_form(b"type=reject&comment=bad%00words")


def test_tokens_match_in_constant_time_and_never_when_missing() -> None:
    assert tokens_match("abc", "abc")
    assert not tokens_match("abc", "abd")
    assert not tokens_match("", "") and not tokens_match(None, "x") and not tokens_match("x", None)


def test_templates_compile_and_htmx_is_vendored_with_its_licence() -> None:
    env = template_environment()
    for name in env.list_templates():
        env.get_template(name)
    assert {"base.html", "queue.html", "approval.html", "login.html"} <= set(env.list_templates())
    htmx = (STATIC_DIR / "htmx.min.js").read_text()
    assert htmx.startswith("var htmx=function()") and 'version:"2.' in htmx
    assert "Zero-Clause BSD" in (STATIC_DIR / "htmx.LICENSE").read_text()
