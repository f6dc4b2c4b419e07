"""Tool governance: role permissions, risk rules as data, provenance, and no path around them."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.runtime import Runtime

from core.guardrails.policy_rules import RiskRule, evaluate, parse_rules
from core.guardrails.provenance import Provenance, amounts, executed_refunds
from core.settings import Settings
from graph.builder import make_graph
from graph.context import RunContext
from graph.deps import Deps
from graph.tools import RISK_RULES, TOOLS
from nodes.guard_tools import judge_call, make_guard_tools


class NoService:
    """The guard may read an order (domain checks before escalation), never change one."""

    async def search(self, query: str, *, k: int) -> list[Any]:
        raise AssertionError("guard must not call services")

    async def get_order(self, order_id: str) -> Any:
        return {
            "order_id": order_id,
            "status": "delivered",
            "currency": "USD",
            "total": "100000.00",
            "refunded": "0.00",
            "refundable": "100000.00",
            "placed_at": "2026-01-01T00:00:00+00:00",
            "items": [],
        }

    async def split_reason(self, order_id: str, amount: Any) -> str | None:
        return None

    async def issue_refund(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("guard must not execute anything")


class SplitOrders(NoService):
    """The database says this order had a refund rejected within the split window."""

    async def split_reason(self, order_id: str, amount: Any) -> str | None:
        return f"splits a 900.00 USD refund of {order_id} that a reviewer rejected"


def make_deps(**env: Any) -> Deps:
    return Deps(
        chat_model=None,  # type: ignore[arg-type]
        retriever=NoService(),
        orders=NoService(),
        settings=Settings(**env),
    )


def refund(amount: Any, order: str = "LS-10007") -> dict[str, Any]:
    return {"order_id": order, "amount": amount, "reason": "damaged"}


def said(*texts: str, refunds: list[tuple[str, str]] = ()) -> Provenance:  # type: ignore[assignment]
    messages: list[Any] = [HumanMessage(t) for t in texts]
    for i, (order, amount) in enumerate(refunds):
        messages.append(
            ToolMessage(
                json.dumps({"refund_id": f"r{i}", "order_id": order, "amount": amount}),
                tool_call_id=f"c{i}",
                name="issue_refund",
            )
        )
    return Provenance.of(messages)


async def guard(deps: Deps, message: AIMessage, *history: Any, role: str = "user") -> Any:
    node = make_guard_tools(deps)
    state = {"messages": [*history, message]}
    return await node(state, Runtime(context=RunContext(role=role)))  # type: ignore[arg-type]


def test_roles_get_the_documented_tools() -> None:
    deps = make_deps()
    assert deps.tools_for("user") == ("search_policies", "get_order", "issue_refund")
    assert deps.tools_for("readonly") == ("search_policies", "get_order")
    assert deps.tools_for("someone-else") == (), "unknown roles fail closed"
    custom = make_deps(STEWARD_ROLE_TOOLS={"user": ["get_order"]})
    assert custom.tools_for("user") == ("get_order",)


def test_a_role_without_the_tool_is_denied() -> None:
    call = judge_call(
        "c1",
        "issue_refund",
        refund(10),
        make_deps(),
        role="readonly",
        provenance=said("refund $10 on LS-10007"),
    )
    assert call["verdict"] == "deny" and "not permitted for role 'readonly'" in call["reason"]


def test_refunds_the_user_asked_for_run_and_others_wait() -> None:
    deps = make_deps()
    asked = said("Please refund $120 on LS-10007, it arrived torn.")
    allowed = judge_call("c1", "issue_refund", refund(120), deps, provenance=asked)
    assert allowed["verdict"] == "allow"
    other_order = judge_call(
        "c2",
        "issue_refund",
        refund(120, "LS-10008"),
        deps,
        provenance=said("Please refund $120 on LS-10007"),
    )
    assert other_order["verdict"] == "approve"
    assert "order id was never written" in other_order["reason"]
    other_amount = judge_call(
        "c3", "issue_refund", refund(400), deps, provenance=said("Please refund $120 on LS-10007")
    )
    assert other_amount["verdict"] == "approve"


def test_split_refunds_add_up_to_the_threshold() -> None:
    deps = make_deps()
    prov = said("refund $300 and then $300 on LS-10007")
    first = judge_call("c1", "issue_refund", refund(300), deps, provenance=prov)
    second = judge_call("c2", "issue_refund", refund(300), deps, provenance=prov)
    assert (first["verdict"], second["verdict"]) == ("allow", "approve")
    earlier = said("refund $300 on LS-10007", refunds=[("LS-10007", "300.00")])
    assert judge_call("c3", "issue_refund", refund(300), deps, provenance=earlier)["verdict"] == (
        "approve"
    )


def test_a_single_large_refund_is_not_called_a_split() -> None:
    deps = make_deps()
    call = judge_call(
        "c1", "issue_refund", refund(700), deps, provenance=said("Refund $700 on LS-10007 please.")
    )
    assert call["verdict"] == "approve"
    assert "split" not in call["reason"]


def test_hard_limit_denies_even_with_approval_possible() -> None:
    call = judge_call(
        "c1", "issue_refund", refund(6000), make_deps(), provenance=said("refund $6000 on LS-10007")
    )
    assert call["verdict"] == "deny" and "finance" in call["reason"]


def test_extra_rules_from_settings_are_data() -> None:
    deps = make_deps(
        STEWARD_TOOL_RULES=[
            {"tool": "get_order", "action": "deny", "code": "orders_frozen", "roles": ["user"]},
            {
                "tool": "issue_refund",
                "field": "amount",
                "op": ">",
                "value": 50,
                "action": "approve",
                "code": "small_team_limit",
            },
        ]
    )
    assert judge_call("c1", "get_order", {"order_id": "LS-10001"}, deps)["verdict"] == "deny"
    assert (
        judge_call("c2", "get_order", {"order_id": "LS-10001"}, deps, role="admin")["verdict"]
        == "allow"
    )
    assert (
        judge_call(
            "c3", "issue_refund", refund(60), deps, provenance=said("refund $60 on LS-10007")
        )["verdict"]
        == "approve"
    )
    with pytest.raises(ValueError, match="action"):
        parse_rules([{"tool": "x", "action": "maybe", "code": "c"}])


def test_strictest_action_wins_and_missing_facts_never_match() -> None:
    rules = (
        RiskRule(tool="*", action="approve", code="a"),
        RiskRule(tool="t", field="n", op=">", value=1, action="deny", code="d"),
    )
    assert evaluate("t", {"n": 2}, rules, Settings())[0] == "deny"
    assert evaluate("t", {}, rules, Settings())[0] == "approve"
    assert evaluate("t", {"n": "not a number"}, rules, Settings())[0] == "approve"


def test_threshold_rule_reads_the_setting() -> None:
    [threshold_rule] = [r for r in RISK_RULES if r.code == "refund_above_threshold"]
    assert threshold_rule.value == "$refund_approval_threshold"
    deps = make_deps(STEWARD_REFUND_APPROVAL_THRESHOLD=Decimal(50))
    assert judge_call("c", "issue_refund", refund(60), deps)["verdict"] == "approve"


def test_provenance_parsing() -> None:
    assert amounts("refund $1,199.00 on LS-10013 and 20 dollars") == {
        Decimal("1199.00"),
        Decimal(20),
    }
    replayed = [
        ToolMessage(
            json.dumps({"refund_id": "r1", "order_id": "LS-10007", "amount": "120.00"}),
            tool_call_id=c,
            name="issue_refund",
        )
        for c in ("a", "b")
    ]
    failed = ToolMessage(
        json.dumps({"status": "failed"}), tool_call_id="c", name="issue_refund", status="error"
    )
    assert executed_refunds([*replayed, failed]) == {"LS-10007": Decimal("120.00")}


async def test_guard_uses_the_role_from_config() -> None:
    deps = make_deps()
    message = AIMessage("", tool_calls=[{"id": "c1", "name": "issue_refund", "args": refund(10)}])
    out = await guard(deps, message, HumanMessage("refund $10 on LS-10007"), role="readonly")
    assert out["plan"][0]["verdict"] == "deny"
    out = await guard(deps, message, HumanMessage("refund $10 on LS-10007"), role="user")
    assert out["plan"][0]["verdict"] == "allow"


async def test_a_split_the_database_reports_waits_for_a_person() -> None:
    """Under the threshold and written by the user, but the store's split rule holds it."""
    deps = Deps(
        chat_model=None,  # type: ignore[arg-type]
        retriever=NoService(),
        orders=SplitOrders(),
        settings=Settings(),
    )
    message = AIMessage("", tool_calls=[{"id": "c1", "name": "issue_refund", "args": refund(450)}])
    out = await guard(deps, message, HumanMessage("refund $450 on LS-10007"))
    [call] = out["plan"]
    assert call["verdict"] == "approve"
    assert call["reason"] == (
        "requires approval: this refund splits a 900.00 USD refund of LS-10007 that a "
        "reviewer rejected"
    )
    big = AIMessage("", tool_calls=[{"id": "c2", "name": "issue_refund", "args": refund(600)}])
    out = await guard(deps, big, HumanMessage("refund $600 on LS-10007"))
    reason = out["plan"][0]["reason"]
    assert "approval threshold" in reason and "reviewer rejected" in reason, "both reasons"


def test_only_guard_and_approval_lead_to_run_tools() -> None:
    graph = make_graph(deps=make_deps()).get_graph()
    sources = {edge.source for edge in graph.edges if edge.target == "run_tools"}
    assert sources == {"guard_tools", "approval"}
    assert {edge.source for edge in graph.edges if edge.target == "approval"} == {"guard_tools"}


NAMES = st.sampled_from([*TOOLS, "drop_tables", "issue_refunds", "shell", "ISSUE_REFUND"])
ORDERS = st.sampled_from(["LS-10007", "LS-10008", "LS-10013", "ls-10007", "10007"])
AMOUNTS = st.one_of(
    st.integers(-10, 20_000),
    st.decimals("0.01", "20000", places=2),
    st.sampled_from(["500.01", "1e4", "NaN", "9" * 20]),
)
ARGS = st.fixed_dictionaries(
    {"order_id": ORDERS, "amount": AMOUNTS, "reason": st.text(max_size=20)},
    optional={
        "approval": st.just({"decision": "approve", "reviewer": "me"}),
        "query": st.text(max_size=5),
    },
)


@settings(
    max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    calls=st.lists(st.tuples(NAMES, ARGS), min_size=1, max_size=6),
    role=st.sampled_from(["user", "readonly", "admin", "guest"]),
    user_text=st.sampled_from(
        ["refund $120 on LS-10007", "refund LS-10013 $1199", "hello", "refund 900 on LS-10007"]
    ),
)
def test_no_model_output_makes_a_risky_call_runnable(
    calls: list[tuple[str, dict[str, Any]]], role: str, user_text: str
) -> None:
    """Whatever calls the model emits, `allow` only ever goes to a permitted, valid call of at
    most the threshold; everything above it is held or denied, unknown tools are denied."""
    import asyncio

    deps = make_deps()
    message = AIMessage(
        "", tool_calls=[{"id": f"c{i}", "name": n, "args": a} for i, (n, a) in enumerate(calls)]
    )
    out = asyncio.run(guard(deps, message, HumanMessage(user_text), role=role))
    per_order: dict[str, Decimal] = {}
    for planned in out["plan"]:
        if planned["verdict"] != "allow":
            continue
        assert planned["name"] in deps.tools_for(role)
        assert planned["approval"] is None
        if planned["name"] == "issue_refund":
            assert Decimal(planned["args"]["amount"]) <= deps.approval_threshold
            assert planned["args"]["order_id"] in user_text
            order = planned["args"]["order_id"]
            per_order[order] = per_order.get(order, Decimal(0)) + Decimal(planned["args"]["amount"])
    assert all(total <= deps.approval_threshold for total in per_order.values()), "no splitting"
