"""guard_tools decides in code: unknown tools and bad arguments never run; big refunds wait."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from langchain_core.messages import AIMessage

from core.settings import Settings
from graph.deps import Deps
from nodes.guard_tools import judge_call, make_guard_tools


class NoService:
    async def search(self, query: str, *, k: int) -> list[Any]:
        raise AssertionError("guard must not call services")

    async def get_order(self, order_id: str) -> Any:
        raise AssertionError("guard must not call services")

    async def issue_refund(self, **kwargs: Any) -> Any:
        raise AssertionError("guard must not call services")


@pytest.fixture(name="deps")
def fx_deps() -> Deps:
    return Deps(
        chat_model=None,  # type: ignore[arg-type]
        retriever=NoService(),
        orders=NoService(),  # type: ignore[arg-type]
        settings=Settings(STEWARD_MAX_TOOL_CALLS=3),  # type: ignore[call-arg]
    )


def refund(amount: Any, order: str = "LS-10001") -> dict[str, Any]:
    return {"order_id": order, "amount": amount, "reason": "damaged"}


def test_refund_at_threshold_is_allowed(deps: Deps) -> None:
    assert judge_call("c1", "issue_refund", refund(500), deps)["verdict"] == "allow"


def test_refund_above_threshold_requires_approval(deps: Deps) -> None:
    call = judge_call("c1", "issue_refund", refund("500.01"), deps)
    assert call["verdict"] == "approve"
    assert call["args"]["amount"] == "500.01"


def test_threshold_comes_from_settings() -> None:
    deps = Deps(
        chat_model=None,  # type: ignore[arg-type]
        retriever=NoService(),
        orders=NoService(),  # type: ignore[arg-type]
        settings=Settings(STEWARD_REFUND_APPROVAL_THRESHOLD=Decimal("50")),  # type: ignore[call-arg]
    )
    assert judge_call("c1", "issue_refund", refund(60), deps)["verdict"] == "approve"


@pytest.mark.parametrize(
    "args",
    [
        refund(-5),
        refund(0),
        refund("12.345"),
        refund(10, order="10001"),
        {"order_id": "LS-10001", "amount": 10},
        {**refund(10), "approved": True},
        {"order_id": "LS-10001", "amount": "ten", "reason": "x"},
    ],
    ids=[
        "negative",
        "zero",
        "three-decimals",
        "bad-order-id",
        "missing-reason",
        "extra-field",
        "not-a-number",
    ],
)
def test_invalid_arguments_are_denied_with_a_reason(deps: Deps, args: dict[str, Any]) -> None:
    call = judge_call("c1", "issue_refund", args, deps)
    assert call["verdict"] == "deny"
    assert call["reason"].startswith("invalid arguments for issue_refund")


def test_unknown_tool_is_denied(deps: Deps) -> None:
    assert judge_call("c1", "drop_tables", {}, deps)["verdict"] == "deny"


def test_known_tool_outside_the_allowlist_is_denied(deps: Deps) -> None:
    deps.allowed_tools = ("search_policies",)
    call = judge_call("c1", "issue_refund", refund(10), deps)
    assert call["verdict"] == "deny" and "not available" in call["reason"]


async def test_malformed_and_excess_calls_are_denied_and_explained(deps: Deps) -> None:
    message = AIMessage(
        "",
        tool_calls=[
            {"id": f"c{i}", "name": "get_order", "args": {"order_id": "LS-10001"}} for i in range(4)
        ],
        invalid_tool_calls=[
            {
                "id": "bad",
                "name": "issue_refund",
                "args": '{"order_id": ',
                "error": "json",
                "type": "invalid_tool_call",
            }
        ],
    )
    out = await make_guard_tools(deps)({"messages": [message]})
    verdicts = {c["call_id"]: c["verdict"] for c in out["plan"]}
    assert verdicts == {"bad": "deny", "c0": "allow", "c1": "allow", "c2": "allow", "c3": "deny"}
    assert {m.tool_call_id for m in out["messages"]} == {"bad", "c3"}
    assert all(a["status"] == "denied" for a in out["actions"])
