"""Prices, pre-flight estimates, budget limits and model routing (no services)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from core.budget.budgets import BudgetLimits, ScopeSpend
from core.budget.estimates import encoding_name, estimate_call, output_tokens_of
from core.budget.prices import FALLBACK_PRICE, cost_usd, price_for
from core.budget.routing import escalation, route_turn
from core.settings import Settings
from core.tokens import get_encoding

ENC = get_encoding("o200k_base")


def test_prices_come_from_settings_then_the_list_then_the_fallback() -> None:
    settings = Settings(STEWARD_MODEL_PRICES={"mock-1": {"input": 1.0, "output": 2.0}})  # type: ignore[call-arg]
    assert price_for("mock-1", settings).output == 2.0
    assert price_for("gpt-4o-mini-2024-07-18", settings).input == 0.15
    assert price_for("never-heard-of-it", settings) == FALLBACK_PRICE
    assert cost_usd("steward-demo", settings, input_tokens=10**6, output_tokens=10**6) == 0
    cost = cost_usd(
        "gpt-4o-mini",
        settings,
        input_tokens=1_000_000,
        output_tokens=1_000_000,
        cached_input_tokens=500_000,
    )
    assert cost == Decimal("0.075") + Decimal("0.0375") + Decimal("0.6")


def test_estimate_reserves_the_output_cap() -> None:
    settings = Settings()
    messages = [SystemMessage("You are Steward."), HumanMessage("Where is LS-10001?")]
    tools = [{"type": "function", "function": {"name": "get_order", "parameters": {}}}]
    estimate = estimate_call(
        "gpt-4o-mini", messages, tools, max_output_tokens=1024, encoding=ENC, settings=settings
    )
    assert 20 < estimate.input_tokens < 60
    assert estimate.usd == cost_usd(
        "gpt-4o-mini", settings, input_tokens=estimate.input_tokens, output_tokens=1024
    )
    without_tools = estimate_call(
        "gpt-4o-mini", messages, [], max_output_tokens=1024, encoding=ENC, settings=settings
    )
    assert without_tools.input_tokens < estimate.input_tokens


def test_encodings_by_model_family() -> None:
    assert encoding_name("gpt-4o-mini") == "o200k_base"
    assert encoding_name("gpt-4.1") == "o200k_base"
    assert encoding_name("gpt-4-turbo") == "cl100k_base"
    assert encoding_name("gpt-3.5-turbo") == "cl100k_base"


def test_output_tokens_are_counted_when_the_provider_reports_none() -> None:
    reply = AIMessage(
        "", tool_calls=[{"id": "c", "name": "get_order", "args": {"order_id": "LS-10001"}}]
    )
    assert output_tokens_of(reply, ENC) > 3


def test_limits_and_remaining() -> None:
    limits = BudgetLimits.from_settings(Settings(STEWARD_BUDGET_THREAD_USD=""))  # type: ignore[call-arg]
    assert limits.thread is None and limits.user_day == Decimal(5)
    assert ScopeSpend("user_day", Decimal(6), Decimal(5)).remaining_usd == 0
    assert ScopeSpend("thread", Decimal(6), None).remaining_usd is None


@pytest.mark.parametrize(
    ("text", "route", "reason"),
    [
        ("How long is the return window?", "routine", "routine_question"),
        ("Where is my order LS-10003?", "routine", "routine_question"),
        ("Please refund $120 on order LS-10007.", "strong", "action_intent"),
        ("Cancel LS-10010 please", "strong", "action_intent"),
        ("Compare LS-10003 with LS-10004 for me", "strong", "several_orders"),
        ("What's the return window? And the warranty?", "strong", "several_questions"),
        ("word " * 200, "strong", "long_message"),
    ],
)
def test_routing_rule(text: str, route: str, reason: str) -> None:
    assert route_turn(text, ENC, max_routine_tokens=150) == (route, reason)


def test_routine_turns_escalate_on_trouble() -> None:
    assert escalation(0, [{"status": "executed"}]) is None
    assert escalation(1, []) == "repair_needed"
    assert escalation(0, [{"status": "denied"}]) == "tool_trouble"
