"""The relevance floor end to end: out-of-scope questions get the honest answer over HTTP,
in-scope questions keep their citations, and the floor cuts none of the datasets' sources.

The server is `steward serve` with the mock LLM and the index of the shipped corpus, at the
default STEWARD_RETRIEVAL_MIN_SCORE; the recall check uses the retriever as the product loads
it (`load_retriever`), on the same index.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core.knowledge.retriever import load_retriever
from core.settings import Settings

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e

DATASETS = Path(__file__).resolve().parents[2] / "evals" / "datasets"
CONTACT = "support@larkspursupply.example"
"""In STEWARD_SUPPORT_CONTACT's default."""
OUT_OF_SCOPE = [
    "What will the weather be like in Portland tomorrow?",
    "Is it going to rain in Seattle this weekend?",
    "My landlord is keeping my security deposit. Can I sue him in small claims court?",
    "What's a safe dose of ibuprofen for a six-year-old?",
    "Write a Python function that reverses a linked list.",
    "Who won the 2018 FIFA World Cup?",
    "Are you hiring? How do I apply for a job at one of your warehouses?",
    "Is the Ridgeline 2-person tent in stock in green?",
]
"""Weather, legal, medical, code, trivia and two retail near-misses the policies do not cover,
all below the floor. Near-misses above it (another retailer's returns, the CEO, gift wrapping,
renting a kayak) are the floor's known limit: `bench/retrieval_floor.py` lists them."""
IN_SCOPE = {
    "How long do customers have to return an item?": "returns-policy#1",
    "Do Larkspur gift cards expire?": "gift-cards#2",
    "When is a package considered lost?": "lost-packages#1",
}


def cases(name: str) -> list[dict[str, Any]]:
    lines = (DATASETS / f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


async def ask(server: RunningServer, tenant: str, *questions: str) -> dict[str, Any]:
    """Ask the questions in order on one new thread; the last answer."""
    client = server.client(await server.keys("olive", tenant, "user"))
    thread = await client.threads.create()
    response: dict[str, Any] = {}
    for question in questions:
        run_input: Any = {"messages": [{"role": "user", "content": question}]}
        values: Any = await client.runs.wait(thread["thread_id"], "agent", input=run_input)
        response = values["response"]
    return response


@pytest.mark.parametrize("question", OUT_OF_SCOPE)
async def test_out_of_scope_questions_get_the_honest_answer(
    server: RunningServer, question: str
) -> None:
    response = await ask(server, "oos", question)
    assert response["sources"] == []
    assert CONTACT in response["answer"]
    assert response["answer"].startswith("I don't know")
    assert response["refusal"] is None  # an answer, not a refused input
    assert [a["name"] for a in response["actions"]] in ([], ["search_policies"])


@pytest.mark.parametrize("question", IN_SCOPE)
async def test_in_scope_questions_still_cite_their_policy(
    server: RunningServer, question: str
) -> None:
    response = await ask(server, "ins", question)
    assert IN_SCOPE[question] in response["sources"]
    assert CONTACT not in response["answer"]


async def test_an_order_look_up_does_not_ground_an_unrelated_later_question(
    server: RunningServer,
) -> None:
    response = await ask(
        server, "later", "What's the status of LS-10003?", "Who won the 2018 FIFA World Cup?"
    )
    assert response["answer"].startswith("I don't know"), response
    assert CONTACT in response["answer"]


async def test_order_lookups_work_without_any_policy_chunk(server: RunningServer) -> None:
    response = await ask(server, "orders", "What's the status of LS-10003?")
    assert [a["name"] for a in response["actions"]] == ["get_order"]
    assert response["answer"].startswith("Order LS-10003 is")
    assert response["sources"] == []


def test_the_floor_keeps_every_required_source_and_drops_out_of_scope(
    steward_home: Path,
) -> None:
    settings = Settings(home=steward_home)
    product = load_retriever(settings)
    assert product.min_score == Settings.model_fields["retrieval_min_score"].default
    unfloored = load_retriever(settings)
    unfloored.min_score = -1.0
    k = settings.retrieval_k

    lost: list[str] = []
    found = 0
    policy = [
        c
        for name in ("policy", "support")
        for c in cases(name)
        if c["category"] == "policy" and c["expected"].get("sources")
    ]
    for case in policy:
        with_floor = {c["id"] for c in product.search_sync(case["input"], k=k)}
        without = {c["id"] for c in unfloored.search_sync(case["input"], k=k)}
        for group in case["expected"]["sources"]:
            ids = set(group) if isinstance(group, list) else {group}
            if ids & without and not ids & with_floor:
                lost.append(f"{case['id']}: {sorted(ids)}")
            found += bool(ids & with_floor)
    assert lost == [], "the floor cut a required source"
    # 4 cases (pol-steward-approver, 3 support questions) have their sources outside the top k
    # even without a floor.
    assert found >= len(policy) - 4

    for question in OUT_OF_SCOPE:
        assert product.search_sync(question, k=k) == [], question
    leaked = [c["id"] for c in cases("out_of_scope") if product.search_sync(c["input"], k=k)]
    # Near-misses whose nearest chunk is close in meaning (see bench/retrieval_floor.py).
    assert len(leaked) <= 11, leaked
