"""The workflow end to end: real Postgres, ChatOpenAI over HTTP to the mock provider, FAISS."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command
from pydantic import ValidationError

from core.domain.orders import PgOrderStore
from graph.builder import DURABILITY
from graph.context import RunContext
from graph.runtime import Runtime
from tests.run_context import context_for

pytestmark = pytest.mark.integration


def new_config(user: str = "alice") -> RunnableConfig:
    return {"configurable": {"thread_id": str(uuid.uuid4()), "user_id": user}}


async def ask(runtime: Runtime, text: str, config: RunnableConfig) -> dict[str, Any]:
    result: dict[str, Any] = await runtime.graph.ainvoke(
        {"messages": [{"role": "user", "content": text}]},
        config,
        context=context_for(config),
        durability=DURABILITY,
    )
    return result


async def resume(
    runtime: Runtime, decisions: list[dict[str, Any]], config: RunnableConfig
) -> dict[str, Any]:
    result: dict[str, Any] = await runtime.graph.ainvoke(
        Command(resume={"decisions": decisions}),
        config,
        context=context_for(config),
        durability=DURABILITY,
    )
    return result


async def refunds_of(orders: PgOrderStore, order_id: str) -> list[dict[str, Any]]:
    return await orders.list_refunds(order_id)


def index_ids(runtime: Runtime) -> set[str]:
    chunks = (runtime.deps.settings.index_dir / "chunks.jsonl").read_text().splitlines()
    return {json.loads(line)["id"] for line in chunks}


async def test_policy_question_is_answered_with_sources_from_the_index(
    runtime: Runtime, mock_llm_clean: None
) -> None:
    out = await ask(runtime, "Is customer data encrypted at rest?", new_config())
    response = out["response"]
    assert response["refusal"] is None
    assert response["sources"], "a grounded answer cites at least one chunk"
    assert set(response["sources"]) <= index_ids(runtime)
    assert any(s.startswith("data-security") for s in response["sources"])
    assert "encrypt" in response["answer"].lower()


async def test_invented_source_is_removed(runtime: Runtime, mock_llm_clean: None) -> None:
    out = await ask(runtime, "[[mock:invent-source]] How long is the return window?", new_config())
    sources = out["response"]["sources"]
    assert "made-up-policy#9" not in sources
    assert sources and set(sources) <= index_ids(runtime)


async def test_refund_under_threshold_executes_without_approval(
    runtime: Runtime, orders: PgOrderStore, mock_llm_clean: None
) -> None:
    out = await ask(
        runtime, "Please refund $120 on order LS-10007, the tent arrived torn.", new_config()
    )
    assert "__interrupt__" not in out
    [action] = out["response"]["actions"]
    assert (action["name"], action["status"]) == ("issue_refund", "executed")
    [row] = await refunds_of(orders, "LS-10007")
    assert row["amount"] == "120.00" and row["approved_by"] is None
    assert "refunded" in out["response"]["answer"].lower()


async def test_refund_over_threshold_interrupts_with_the_hitl_payload(
    runtime: Runtime, orders: PgOrderStore, mock_llm_clean: None
) -> None:
    out = await ask(runtime, "Refund $700 on LS-10007 please.", new_config())
    [interrupt] = out["__interrupt__"]
    value = interrupt.value
    [request] = value["action_requests"]
    assert request["name"] == "issue_refund"
    assert request["args"]["order_id"] == "LS-10007"
    assert float(request["args"]["amount"]) == 700.0
    assert request["description"]
    assert value["review_configs"] == [
        {"action_name": "issue_refund", "allowed_decisions": ["approve", "edit", "reject"]}
    ]
    assert await refunds_of(orders, "LS-10007") == []


async def test_a_resume_without_a_recorded_decision_releases_nothing(
    runtime: Runtime, orders: PgOrderStore, mock_llm_clean: None
) -> None:
    """Graph resumes carry decisions; only a decided approval row releases a refund."""
    config = new_config()
    await ask(runtime, "Refund $700 on LS-10007 please.", config)
    config["configurable"]["user_id"] = "manager-mia"  # an invented reviewer
    out = await resume(runtime, [{"type": "approve"}], config)
    [action] = out["response"]["actions"]
    assert action["status"] == "failed"
    assert "approval queue" in action["detail"]
    await resume(runtime, [{"type": "approve"}], config)
    assert await refunds_of(orders, "LS-10007") == []


async def test_reject_executes_nothing_and_says_so(
    runtime: Runtime, orders: PgOrderStore, mock_llm_clean: None
) -> None:
    config = new_config()
    await ask(runtime, "Refund $700 on LS-10007 please.", config)
    out = await resume(runtime, [{"type": "reject", "message": "outside policy"}], config)
    assert await refunds_of(orders, "LS-10007") == []
    [action] = out["response"]["actions"]
    assert action["status"] == "rejected"
    answer = out["response"]["answer"].lower()
    assert "not" in answer and "refunded" not in answer.replace("not refunded", "")


async def test_invalid_resume_is_refused_and_the_interrupt_stays_answerable(
    runtime: Runtime, orders: PgOrderStore, mock_llm_clean: None
) -> None:
    config = new_config()
    await ask(runtime, "Refund $700 on LS-10007 please.", config)
    with pytest.raises(ValidationError):
        await resume(runtime, [{"type": "approve"}, {"type": "approve"}], config)
    with pytest.raises(ValidationError):
        edited = {"name": "drop_tables", "args": {}}
        await resume(runtime, [{"type": "edit", "edited_action": edited}], config)
    assert await refunds_of(orders, "LS-10007") == []
    out = await resume(runtime, [{"type": "approve"}], config)
    assert out["response"]["actions"][0]["status"] == "failed"  # no recorded decision


async def test_concurrent_resumes_without_a_decision_produce_no_refund(
    runtime: Runtime, settings: Any, orders: PgOrderStore, mock_llm_clean: None
) -> None:
    from steward.runtime import open_runtime

    config = new_config()
    await ask(runtime, "Refund $900 on LS-10007 please.", config)
    async with open_runtime(settings) as other:  # a second pool, as another replica would
        results = await asyncio.gather(
            resume(runtime, [{"type": "approve"}], config),
            resume(other, [{"type": "approve"}], config),
            return_exceptions=True,
        )
    assert any(isinstance(r, dict) and "response" in r for r in results)
    assert await refunds_of(orders, "LS-10007") == []


async def test_non_allowlisted_tool_is_never_executed(
    runtime: Runtime, orders: PgOrderStore, mock_llm_clean: None
) -> None:
    out = await ask(runtime, "[[mock:tool=drop_tables]] clean up please", new_config())
    denied = [a for a in out["response"]["actions"] if a["name"] == "drop_tables"]
    assert denied and denied[0]["status"] == "denied"
    told = [m for m in out["messages"] if isinstance(m, ToolMessage) and m.name == "drop_tables"]
    assert told and "not available" in str(told[0].content)


async def test_invalid_json_arguments_execute_nothing(
    runtime: Runtime, orders: PgOrderStore, mock_llm_clean: None
) -> None:
    out = await ask(runtime, "[[mock:invalid-json-args]] refund my order", new_config())
    assert all(a["status"] == "denied" for a in out["response"]["actions"])
    assert out["response"]["actions"], "the malformed call is recorded as denied"
    assert await orders.list_refunds() == []


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "status", "status": 429, "retry_after": 0},
        {"kind": "status", "status": 500},
        {"kind": "timeout", "delay_s": 3.5},
    ],
    ids=["429", "500", "timeout"],
)
async def test_provider_faults_are_retried_then_fail_clearly_without_half_state(
    runtime: Runtime,
    orders: PgOrderStore,
    mock_llm: Any,
    mock_llm_clean: None,
    fault: dict[str, Any],
) -> None:
    from core.errors import ProviderError

    attempts = runtime.deps.settings.llm_max_attempts
    await mock_llm.add_faults([{**fault, "count": attempts}])
    config = new_config()
    with pytest.raises(ProviderError) as info:
        await ask(runtime, "Refund $120 on order LS-10007 please.", config)
    assert "timed out" in str(info.value) or str(fault.get("status")) in str(info.value)
    assert len(await mock_llm.requests()) == attempts
    state = await runtime.graph.aget_state(config)
    assert [m.type for m in state.values["messages"]] == ["human"]
    assert state.next == ("agent",)
    assert await orders.list_refunds() == []
    # Once the provider recovers, the same thread continues from its last checkpoint.
    out = await runtime.graph.ainvoke(
        None, config, context=context_for(config), durability=DURABILITY
    )
    assert out["response"]["actions"][0]["status"] == "executed"


async def test_transient_429_is_retried_transparently(
    runtime: Runtime, mock_llm: Any, mock_llm_clean: None
) -> None:
    await mock_llm.add_faults([{"kind": "status", "status": 429, "count": 1, "retry_after": 0}])
    out = await ask(runtime, "How long is the return window?", new_config())
    assert out["response"]["sources"]
    assert len(await mock_llm.requests()) == 2


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ("   ", "empty_input"),
        ("x" * 9000, "input_too_large"),
        (
            [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}],
            "unsupported_content",
        ),
    ],
    ids=["empty", "oversized", "non-text"],
)
async def test_unacceptable_input_is_refused_with_a_reason_code(
    runtime: Runtime, mock_llm: Any, mock_llm_clean: None, content: Any, code: str
) -> None:
    out = await runtime.graph.ainvoke(
        {"messages": [{"role": "user", "content": content}]},
        new_config(),
        context=RunContext(user_id="alice"),
        durability=DURABILITY,
    )
    assert out["response"]["refusal"] == code
    assert out["response"]["answer"]
    assert await mock_llm.requests() == [], "a refused input never reaches the model"


async def test_bad_output_is_repaired_once(runtime: Runtime, mock_llm_clean: None) -> None:
    out = await ask(runtime, "[[mock:bad-output-once]] What is the return window?", new_config())
    assert out["repairs"] == 1
    assert out["response"]["sources"]


async def test_persistently_bad_output_falls_back_safely(
    runtime: Runtime, mock_llm_clean: None
) -> None:
    from graph.prompts import FALLBACK_ANSWER

    out = await ask(runtime, "[[mock:bad-output]] What is the return window?", new_config())
    assert out["repairs"] == runtime.deps.settings.max_repairs
    assert out["response"]["answer"] == FALLBACK_ANSWER
    assert out["response"]["sources"] == []


async def test_an_edit_cannot_release_what_the_rules_deny(
    runtime: Runtime, orders: PgOrderStore, mock_llm_clean: None
) -> None:
    config = new_config()
    await ask(runtime, "Refund $700 on LS-10007 please.", config)
    limit = runtime.deps.settings.refund_deny_above
    assert limit is not None
    edited = {
        "name": "issue_refund",
        "args": {"order_id": "LS-10007", "amount": float(limit) + 1, "reason": "edited"},
    }
    out = await resume(runtime, [{"type": "edit", "edited_action": edited}], config)
    assert [a["status"] for a in out["response"]["actions"]] == ["denied"]
    assert await refunds_of(orders, "LS-10007") == []
