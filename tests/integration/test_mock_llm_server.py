"""The mock LLM server, driven over HTTP by the real ChatOpenAI / openai clients and httpx.

Needs the `mock_llm` fixtures from tests/fixtures_mock_llm.py (registered by the main conftest).
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import openai
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from mock_llm.__main__ import main as mock_main
from mock_llm.server import MockConfig, create_mock_app
from tests.fixtures_mock_llm import MockLLM

pytestmark = pytest.mark.integration

SYSTEM = """You are Steward.
Reply with exactly one JSON object.

<context>
{context}
</context>"""
CONTEXT = (
    "[refund-policy#2] (Refund policy \u203a Approval) Refunds above $500 need a manager's "
    "approval. Smaller refunds are issued at once.\n"
    "[returns-policy#1] (Returns policy) Items can be returned within 30 days."
)
NO_CONTEXT = "(no policy excerpts matched this question)"


@tool
def search_policies(query: str, k: int = 4) -> str:
    """Search the company policies."""
    return query


@tool
def get_order(order_id: str) -> str:
    """Look up an order."""
    return order_id


@tool
def issue_refund(order_id: str, amount: float, reason: str) -> str:
    """Refund an order."""
    return order_id


TOOLS = [search_policies, get_order, issue_refund]


def chat_model(mock: MockLLM, **kwargs: Any) -> Any:
    llm = ChatOpenAI(
        model="gpt-4o-mini",
        base_url=mock.base_url,
        api_key=SecretStr("test"),
        stream_usage=True,
        max_retries=0,
        **kwargs,
    )
    return llm.bind_tools(TOOLS)


def conversation(text: str, context: str = NO_CONTEXT) -> list[Any]:
    return [SystemMessage(SYSTEM.format(context=context)), HumanMessage(text)]


async def collect(model: Any, messages: list[Any]) -> tuple[AIMessageChunk, int]:
    """Stream a reply; return the aggregated chunk and the number of chunks seen."""
    total: AIMessageChunk | None = None
    count = 0
    async for chunk in model.astream(messages):
        count += 1
        total = chunk if total is None else total + chunk
    assert total is not None
    return total, count


async def sse_events(mock: MockLLM, body: dict[str, Any]) -> list[str]:
    """POST a streaming request with httpx; return the raw `data:` payloads in order."""
    events: list[str] = []
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("POST", f"{mock.base_url}/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = (await response.aread()).decode()
    for block in raw.split("\n\n"):
        if block:
            assert block.startswith("data: "), block
            events.append(block.removeprefix("data: "))
    return events


# --------------------------------------------------------------------------- ChatOpenAI


async def test_streamed_tool_call_parses_with_usage(mock_llm_clean: MockLLM) -> None:
    message, chunks = await collect(
        chat_model(mock_llm_clean), conversation("Please refund $700 on LS-10001")
    )
    assert chunks > 2
    [call] = message.tool_calls
    assert call["name"] == "issue_refund"
    assert call["args"] == {
        "order_id": "LS-10001",
        "amount": 700,
        "reason": "Please refund $700 on LS-10001",
    }
    assert call["id"] is not None and call["id"].startswith("call_")
    assert message.invalid_tool_calls == []
    assert message.usage_metadata is not None
    assert message.usage_metadata["input_tokens"] > 0
    assert message.usage_metadata["output_tokens"] > 0
    assert message.response_metadata["finish_reason"] == "tool_calls"
    assert message.response_metadata["model_name"] == "gpt-4o-mini"


async def test_streamed_parallel_tool_calls(mock_llm_clean: MockLLM) -> None:
    message, _ = await collect(
        chat_model(mock_llm_clean), conversation("Refund $50 on LS-10001 and $75 on LS-10002")
    )
    got = [(c["name"], c["args"]["order_id"], c["args"]["amount"]) for c in message.tool_calls]
    assert got == [("issue_refund", "LS-10001", 50), ("issue_refund", "LS-10002", 75)]


async def test_streamed_text_answer(mock_llm_clean: MockLLM) -> None:
    message, chunks = await collect(
        chat_model(mock_llm_clean), conversation("Who approves big refunds?", CONTEXT)
    )
    assert chunks > 5  # word deltas, not one blob
    assert message.tool_calls == []
    parsed = json.loads(str(message.content))
    assert parsed["answer"].startswith("According to our Refund policy \u203a Approval:")
    assert parsed["sources"] == ["refund-policy#2", "returns-policy#1"]
    assert message.usage_metadata is not None and message.usage_metadata["total_tokens"] > 0
    assert message.response_metadata["finish_reason"] == "stop"


async def test_non_streamed_invoke(mock_llm_clean: MockLLM) -> None:
    message = await chat_model(mock_llm_clean).ainvoke(conversation("where is LS-10002?"))
    assert isinstance(message, AIMessage)
    assert [(c["name"], c["args"]) for c in message.tool_calls] == [
        ("get_order", {"order_id": "LS-10002"})
    ]
    assert message.usage_metadata is not None and message.usage_metadata["input_tokens"] > 0


async def test_rate_limit_fault_raises_with_retry_after(mock_llm_clean: MockLLM) -> None:
    await mock_llm_clean.add_faults(
        [{"kind": "status", "status": 429, "count": 1, "retry_after": 2}]
    )
    with pytest.raises(openai.RateLimitError) as caught:
        await chat_model(mock_llm_clean).ainvoke(conversation("hello"))
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.body == {
        "message": "Injected 429 fault.",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }
    # The fault is used up: the next request succeeds.
    await chat_model(mock_llm_clean).ainvoke(conversation("hello"))


async def test_status_faults_apply_fifo_to_the_next_n_requests(mock_llm_clean: MockLLM) -> None:
    await mock_llm_clean.add_faults(
        [
            {"kind": "status", "status": 503, "count": 2},
            {"kind": "status", "status": 500, "count": 1},
        ]
    )
    model = chat_model(mock_llm_clean)
    seen = []
    for _ in range(4):
        try:
            await model.ainvoke(conversation("hello"))
            seen.append(200)
        except openai.APIStatusError as exc:
            seen.append(exc.status_code)
    assert seen == [503, 503, 500, 200]
    stats = await mock_llm_clean.stats()
    assert stats["faults_by_kind"]["status"] >= 3
    assert stats["queued_faults"] == 0


async def test_timeout_fault_raises_api_timeout(mock_llm_clean: MockLLM) -> None:
    await mock_llm_clean.add_faults([{"kind": "timeout", "count": 1, "delay_s": 3}])
    with pytest.raises(openai.APITimeoutError):
        await chat_model(mock_llm_clean, timeout=0.5).ainvoke(conversation("hello"))


@pytest.mark.parametrize("streaming", [False, True], ids=["invoke", "stream"])
async def test_malformed_tool_args_become_invalid_tool_calls(
    mock_llm_clean: MockLLM, streaming: bool
) -> None:
    await mock_llm_clean.add_faults([{"kind": "malformed_tool_args", "count": 1}])
    model = chat_model(mock_llm_clean, streaming=streaming)
    # A text reply does not use up the fault; the next tool-call reply does.
    text = await model.ainvoke(conversation("Who approves big refunds?", CONTEXT))
    assert json.loads(str(text.content))["sources"]
    message = await model.ainvoke(conversation("Please refund $700 on LS-10001"))
    assert message.tool_calls == []
    [invalid] = message.invalid_tool_calls
    assert invalid["name"] == "issue_refund"
    assert invalid["args"] is not None and invalid["args"].startswith('{"order_id": "LS-10001"')
    again = await model.ainvoke(conversation("Please refund $700 on LS-10001"))
    assert again.tool_calls and again.invalid_tool_calls == []


async def test_request_log_records_the_request(mock_llm_clean: MockLLM) -> None:
    await chat_model(mock_llm_clean).ainvoke(conversation("where is LS-10003?"))
    [logged] = await mock_llm_clean.requests()
    assert logged["model"] == "gpt-4o-mini"
    assert logged["messages"][-1] == {"role": "user", "content": "where is LS-10003?"}
    assert [t["function"]["name"] for t in logged["tools"]] == [
        "search_policies",
        "get_order",
        "issue_refund",
    ]
    await mock_llm_clean.clear_requests()
    assert await mock_llm_clean.requests() == []


# --------------------------------------------------------------------------- wire format


async def test_sse_tool_call_wire_format(mock_llm_clean: MockLLM) -> None:
    body = {
        "model": "my-model",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "refund $700 on LS-10001"}],
        "tools": [issue_refund_schema()],
    }
    events = await sse_events(mock_llm_clean, body)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "my-model" for c in chunks)
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    [header] = first["tool_calls"]
    assert header["index"] == 0 and header["type"] == "function"
    assert header["id"].startswith("call_")
    assert header["function"] == {"name": "issue_refund", "arguments": ""}
    fragments = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:-2]]
    assert all(f["index"] == 0 and set(f) == {"index", "function"} for f in fragments)
    args = json.loads("".join(f["function"]["arguments"] for f in fragments))
    assert args["order_id"] == "LS-10001" and args["amount"] == 700
    finish = chunks[-2]["choices"][0]
    assert finish["delta"] == {} and finish["finish_reason"] == "tool_calls"
    usage = chunks[-1]
    assert usage["choices"] == []
    assert usage["usage"]["total_tokens"] == (
        usage["usage"]["prompt_tokens"] + usage["usage"]["completion_tokens"]
    )


async def test_sse_without_include_usage_has_no_usage_chunk(mock_llm_clean: MockLLM) -> None:
    body = {
        "model": "m",
        "stream": True,
        "messages": [{"role": "user", "content": "What is the return window?"}],
    }
    events = await sse_events(mock_llm_clean, body)
    chunks = [json.loads(e) for e in events[:-1]]
    assert events[-1] == "[DONE]"
    assert all(c["choices"] and "usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert json.loads(text)["answer"]


async def test_non_streaming_response_shape(mock_llm_clean: MockLLM) -> None:
    body = {
        "model": "echo-me",
        "messages": [{"role": "user", "content": "where is LS-10001"}],
        "tools": [get_order_schema()],
    }
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{mock_llm_clean.base_url}/chat/completions", json=body)
    data = response.json()
    assert data["object"] == "chat.completion" and data["model"] == "echo-me"
    [choice] = data["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"][0]["function"]["name"] == "get_order"
    assert data["usage"]["prompt_tokens"] > 0


async def test_truncate_fault(mock_llm_clean: MockLLM) -> None:
    await mock_llm_clean.add_faults([{"kind": "truncate", "count": 2}])
    body = {
        "model": "m",
        "stream": True,
        "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "What is the return window?"}],
    }
    events = await sse_events(mock_llm_clean, body)
    assert events and "[DONE]" not in events
    assert all(json.loads(e)["choices"][0]["finish_reason"] is None for e in events)
    body["stream"] = False
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{mock_llm_clean.base_url}/chat/completions", json=body)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


async def test_invalid_fault_is_rejected(mock_llm_clean: MockLLM) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{mock_llm_clean.root_url}/_mock/faults", json=[{"kind": "explode"}]
        )
    assert response.status_code == 400
    assert "unknown fault kind" in response.json()["error"]["message"]


# --------------------------------------------------------------------------- other routes


async def test_embeddings_are_deterministic_unit_vectors(mock_llm_clean: MockLLM) -> None:
    client = openai.AsyncOpenAI(base_url=mock_llm_clean.base_url, api_key="test", max_retries=0)
    first = await client.embeddings.create(
        model="text-embedding-3-small", input=["refund window", "shipping costs"]
    )
    again = await client.embeddings.create(model="text-embedding-3-small", input="refund window")
    small = await client.embeddings.create(
        model="text-embedding-3-small",
        input="refund window",
        dimensions=64,
        encoding_format="float",
    )
    await client.close()
    a, b = (d.embedding for d in first.data)
    assert len(a) == 256 and math.isclose(math.fsum(x * x for x in a), 1.0, rel_tol=1e-5)
    assert again.data[0].embedding == pytest.approx(a, abs=1e-6)
    assert a != pytest.approx(b)
    assert len(small.data[0].embedding) == 64
    assert first.usage.prompt_tokens > 0


async def test_models_and_health(mock_llm_clean: MockLLM) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        models = (await client.get(f"{mock_llm_clean.base_url}/models")).json()
        health = (await client.get(f"{mock_llm_clean.root_url}/health")).json()
    assert "gpt-4o-mini" in [m["id"] for m in models["data"]]
    assert health == {"status": "ok"}


async def error_statuses(config: MockConfig, n: int) -> list[int]:
    """Send `n` chat requests to an in-process app; return the status codes."""
    app = create_mock_app(config)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://mock",
    ) as client:
        return [
            (await client.post("/v1/chat/completions", json=body)).status_code for _ in range(n)
        ]


async def test_error_rate_is_seeded_and_deterministic() -> None:
    first = await error_statuses(MockConfig(error_rate=0.5, seed=7), 40)
    assert first == await error_statuses(MockConfig(error_rate=0.5, seed=7), 40)
    assert {200, 429, 500} <= set(first)
    assert first != await error_statuses(MockConfig(error_rate=0.5, seed=8), 40)
    assert set(await error_statuses(MockConfig(error_rate=0.0), 10)) == {200}


def test_cli_rejects_out_of_range_options() -> None:
    with pytest.raises(SystemExit):
        mock_main(["--error-rate", "1.5"])
    with pytest.raises(SystemExit):
        mock_main(["--latency-ms", "-1"])


def issue_refund_schema() -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": "issue_refund",
            "parameters": {
                "type": "object",
                "properties": {
                    "order_id": {"type": "string"},
                    "amount": {"type": "number"},
                    "reason": {"type": "string"},
                },
            },
        },
    }


def get_order_schema() -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": "get_order",
            "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}},
        },
    }
