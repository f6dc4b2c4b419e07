"""validate's output guardrails: PII in answers, refund claims without a refund, budget stops."""

from __future__ import annotations

import json
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage

from core.guardrails.claims import refund_claims, unbacked_claims
from core.settings import Settings
from graph.deps import Deps
from graph.prompts import OUT_OF_SCOPE_ANSWER, REFUSAL_ANSWERS
from nodes.validate import OUT_OF_SCOPE, make_validate


def deps(**env: Any) -> Deps:
    return Deps(
        chat_model=None,  # type: ignore[arg-type]
        retriever=None,  # type: ignore[arg-type]
        orders=None,  # type: ignore[arg-type]
        settings=Settings(**env),
    )


def final(answer: str, sources: list[str] | None = None) -> AIMessage:
    return AIMessage(json.dumps({"answer": answer, "sources": sources or []}))


def refund_action(status: str, order: str = "LS-10007", amount: str = "120.00") -> dict[str, Any]:
    return {
        "id": "c1",
        "name": "issue_refund",
        "args": {"order_id": order, "amount": amount, "reason": "x"},
        "status": status,
        "detail": "",
    }


async def run_validate(
    answer: str,
    *,
    actions: list[dict[str, Any]] | None = None,
    history: list[Any] | None = None,
    retrieved: list[Any] | None = None,
    stop_reason: str | None = None,
    question: str = "Did that go through?",
    **env: Any,
) -> dict[str, Any]:
    state = {
        "messages": [*(history or []), HumanMessage(question), final(answer)],
        "actions": actions or [],
        "retrieved": retrieved or [],
        "stop_reason": stop_reason,
    }
    out: dict[str, Any] = await make_validate(deps(**env))(state)  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize(
    ("text", "claims"),
    [
        ("I've refunded $120.00 on order LS-10007 (refund 9f1c).", True),
        ("Your refund has been processed and will show in 5 days.", True),
        ("Order LS-10007 has been fully refunded.", True),
        ("We have issued a full refund for your tent.", True),
        ("The refund of $700 on order LS-10007 is waiting for a manager's approval.", False),
        ("The refund was not issued: rejected by the reviewer.", False),
        ("Refunds are processed within 5 business days of approval.", False),
        ("Once approved, your refund will be issued to the original card.", False),
        ("I can't issue a refund above $500 without approval.", False),
    ],
)
def test_refund_claims_are_recognised(text: str, claims: bool) -> None:
    assert bool(refund_claims(text)) is claims


def test_a_claim_is_backed_only_by_a_refund_of_the_same_order() -> None:
    answer = "I've refunded $120.00 on order LS-10007."
    assert unbacked_claims(answer, {"LS-10007"}) == []
    assert unbacked_claims(answer, {"LS-10008"})
    assert unbacked_claims("Your refund has been processed.", set())
    assert unbacked_claims("Your refund has been processed.", {"LS-10001"}) == []


async def test_unbacked_refund_claim_is_rewritten_truthfully() -> None:
    out = await run_validate(
        "Great news: I've refunded $900 on order LS-10007!",
        actions=[refund_action("rejected", amount="900.00")],
    )
    answer = out["response"]["answer"]
    assert "haven't issued a refund" in answer
    assert "rejected by a reviewer" in answer
    assert "unbacked_refund_claim" in out["guardrail_codes"]


async def test_backed_claims_stay() -> None:
    text = "I've refunded $120.00 on order LS-10007."
    out = await run_validate(text, actions=[refund_action("executed")])
    assert out["response"]["answer"] == text
    earlier = ToolMessage(
        json.dumps({"refund_id": "r1", "order_id": "LS-10007", "amount": "120.00"}),
        tool_call_id="t",
        name="issue_refund",
    )
    previous_turn = [HumanMessage("Refund $120 on LS-10007."), earlier, final("Refunded.")]
    out = await run_validate(text, history=previous_turn)
    assert out["response"]["answer"] == text, "the refund of the turn before backs a follow-up"


async def test_pii_in_answers_is_redacted_but_policy_contacts_stay() -> None:
    chunk = {
        "id": "incident#1",
        "title": "Incident",
        "score": 1.0,
        "text": "Report incidents to security@larkspursupply.example at once.",
    }
    out = await run_validate(
        "Email security@larkspursupply.example; the customer's card is 4111 1111 1111 1111 "
        "and her address is ava.thompson@gmail.com.",
        retrieved=[chunk],
    )
    answer = out["response"]["answer"]
    assert "security@larkspursupply.example" in answer
    assert "4111 1111 1111 1111" not in answer and "ava.thompson@gmail.com" not in answer
    assert "output_pii_redacted" in out["guardrail_codes"]


async def test_output_checks_can_be_switched_off() -> None:
    text = "I've refunded it, card 4111 1111 1111 1111."
    out = await run_validate(
        text,
        retrieved=[POLICY_CHUNK],  # grounded, so the relevance floor does not rewrite it
        STEWARD_GUARD_OUTPUT_PII=False,
        STEWARD_GUARD_REFUND_CLAIMS=False,
    )
    assert out["response"]["answer"] == text


POLICY_CHUNK = {
    "id": "refund-policy#1",
    "source": "refund-policy.md",
    "title": "Refund policy",
    "score": 0.6,
    "text": "Refunds go back to the original payment method.",
}


async def test_ungrounded_answer_becomes_the_honest_one() -> None:
    out = await run_validate(
        "Our policy allows refunds in cash within 90 days.",
        STEWARD_SUPPORT_CONTACT="Larkspur Help, help@example.test",
    )
    response = out["response"]
    assert response["answer"] == OUT_OF_SCOPE_ANSWER.format(
        contact="Larkspur Help, help@example.test"
    )
    assert "cash" not in response["answer"]
    assert response["sources"] == [] and response["refusal"] is None
    assert out["guardrail_codes"] == [OUT_OF_SCOPE]


async def test_ungrounded_answer_after_empty_searches_keeps_its_actions() -> None:
    search = {
        "id": "c1",
        "name": "search_policies",
        "args": {"query": "weather"},
        "status": "executed",
        "detail": "0 excerpts",
    }
    out = await run_validate("Sunny, 25 degrees.", actions=[search])
    assert out["response"]["answer"].startswith("I don't know")
    assert out["response"]["actions"] == [search]


LOOKUP_TURN = [
    HumanMessage("Where is LS-10007?"),
    ToolMessage('{"order_id": "LS-10007"}', tool_call_id="t", name="get_order"),
    final("Order LS-10007 has shipped."),
]


@pytest.mark.parametrize("grounding", ["chunk", "action", "previous turn", "small talk"])
async def test_grounded_answers_are_kept(grounding: str) -> None:
    text = "Order LS-10007 is shipped."
    out = await run_validate(
        text,
        retrieved=[POLICY_CHUNK] if grounding == "chunk" else None,
        actions=[refund_action("denied")] if grounding == "action" else None,
        history=LOOKUP_TURN if grounding == "previous turn" else None,
        question="Thanks, that's all I needed!" if grounding == "small talk" else "Is it late?",
    )
    assert out["response"]["answer"] == text
    assert OUT_OF_SCOPE not in out.get("guardrail_codes", [])


async def test_an_older_tool_result_does_not_ground_a_new_question() -> None:
    out = await run_validate(
        "France won the 2018 FIFA World Cup.",
        history=LOOKUP_TURN,
        question="Who won the 2018 FIFA World Cup, and who scored in the final?",
    )
    assert "France" not in out["response"]["answer"]
    assert out["guardrail_codes"] == [OUT_OF_SCOPE]
    two_turns_later = [*LOOKUP_TURN, HumanMessage("And the weather?"), final("I don't know.")]
    out = await run_validate("Sunny.", history=two_turns_later, question="Is it hot?")
    assert out["guardrail_codes"] == [OUT_OF_SCOPE]


async def test_the_support_contact_in_an_answer_is_not_masked() -> None:
    out = await run_validate(
        "I can't answer that; please write to help@larkspur.example.",
        retrieved=[POLICY_CHUNK],
        STEWARD_SUPPORT_CONTACT="Larkspur Help, help@larkspur.example",
    )
    assert "help@larkspur.example" in out["response"]["answer"]


async def test_budget_stop_is_a_refusal_with_truthful_actions() -> None:
    out = await run_validate(
        "ignored", stop_reason="budget_exceeded", actions=[refund_action("executed")]
    )
    response = out["response"]
    assert response["refusal"] == "budget_exceeded"
    assert response["answer"].startswith(REFUSAL_ANSWERS["budget_exceeded"])
    assert "was completed" in response["answer"]
