"""The `messages` (legacy) and `events` stream modes, as langgraph-api sends them."""

from __future__ import annotations

import itertools
import json
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from langgraph_sdk.client import LangGraphClient

from mock_llm.process import MockLLM

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e

QUESTION: Any = {"messages": [{"role": "user", "content": "How long is the return window?"}]}
BIG_REFUND: Any = {"messages": [{"role": "user", "content": "Refund $600 on LS-10017 please."}]}
APPROVE: Any = {"decisions": [{"type": "approve"}]}
IDENTITY = {"user_id", "tenant_id", "role", "requester_id"}


@pytest.fixture(name="alice")
async def fx_alice(server: RunningServer) -> LangGraphClient:
    return server.client(await server.keys("alice", f"t-{uuid.uuid4().hex[:8]}", "user"))


async def test_messages_mode_sends_metadata_then_growing_partials(
    alice: LangGraphClient, mock_llm_clean: MockLLM
) -> None:
    tid = (await alice.threads.create())["thread_id"]
    parts = [
        p
        async for p in alice.runs.stream(
            tid, "agent", input=QUESTION, stream_mode=["messages", "values"]
        )
    ]
    names = [p.event for p in parts]
    assert "messages" not in names, "the tuple form is `messages-tuple`'s"
    assert {"messages/metadata", "messages/partial"} <= set(names)
    first_seen: dict[str, int] = {}
    partials: dict[str, list[str]] = {}
    for i, part in enumerate(parts):
        if part.event == "messages/metadata":
            [(message_id, body)] = part.data.items()
            assert message_id not in first_seen, "metadata once per message"
            assert body["metadata"]["langgraph_node"]
            first_seen[message_id] = i
        elif part.event in ("messages/partial", "messages/complete"):
            [message] = part.data
            assert first_seen[message["id"]] < i, "metadata comes first"
            partials.setdefault(message["id"], []).append(message["content"])
    for contents in partials.values():  # each partial holds the message so far
        assert all(b.startswith(a) for a, b in itertools.pairwise(contents))
    answer = [p.data for p in parts if p.event == "values"][-1]["response"]["answer"]
    assert any(answer in c[-1] or c[-1] in answer for c in partials.values() if c[-1])
    assert (await alice.runs.list(tid))[0]["status"] == "success"


async def test_events_mode_sends_langchain_events_without_internals(
    alice: LangGraphClient, mock_llm_clean: MockLLM
) -> None:
    """Reports stay inside; the system prompt is withheld from every event (a model's end
    event repeats its input)."""
    tid = (await alice.threads.create())["thread_id"]
    parts = [
        p
        async for p in alice.runs.stream(
            tid, "agent", input=QUESTION, stream_mode=["events", "values"]
        )
    ]
    events = [p.data for p in parts if p.event == "events"]
    kinds = {e["event"] for e in events}
    assert {"on_chain_start", "on_chain_end", "on_chat_model_start"} <= kinds
    assert any(e["event"] == "on_chat_model_stream" for e in events)
    assert all(e["name"] != "steward.report" for e in events)
    assert [p for p in parts if p.event == "values"][-1].data["response"]["sources"]
    system_prompts = [
        m["content"]
        for request in await mock_llm_clean.requests()
        for m in request["messages"]
        if m["role"] == "system"
    ]
    assert system_prompts, "the model got a system prompt"
    wire = json.dumps(events)
    for prompt in system_prompts:
        assert json.dumps(prompt[:80])[1:-1] not in wire  # as it reads inside JSON
    assert "You are Steward" in system_prompts[0] and "You are Steward" not in wire
    withheld = [e["event"] for e in events if "[system prompt withheld]" in json.dumps(e["data"])]
    assert {"on_chat_model_start", "on_chat_model_end"} <= set(withheld)
    assert (await alice.runs.list(tid))[0]["status"] == "success"


async def test_events_mode_alone_still_ends_with_the_interrupt(
    alice: LangGraphClient, mock_llm_clean: MockLLM
) -> None:
    tid = (await alice.threads.create())["thread_id"]
    big: Any = {"messages": [{"role": "user", "content": "Refund $600 on LS-10017 please."}]}
    parts = [p async for p in alice.runs.stream(tid, "agent", input=big, stream_mode="events")]
    interrupts = [p.data for p in parts if p.event == "values" and "__interrupt__" in p.data]
    assert interrupts and interrupts[-1]["__interrupt__"][0]["response_schema"]
    assert (await alice.threads.get(tid))["status"] == "interrupted"


async def test_no_public_object_carries_the_server_set_identity(
    server: RunningServer, mock_llm_clean: MockLLM
) -> None:
    """The identity the server sets for a run (user, tenant, role, requester) is for its logs
    and traces: not in checkpoint and debug events, messages and events metadata, state or
    history. (The graph's own `approval` value names its reviewer, as the approval does.)"""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    pat = server.client(await server.keys("pat", tenant, "user"))
    mia = server.client(await server.keys("mia", tenant, "approver"))
    tid = (await pat.threads.create())["thread_id"]
    held: Any = await pat.runs.wait(tid, "agent", input=BIG_REFUND)
    assert held["__interrupt__"]
    modes: Any = ["checkpoints", "debug", "messages-tuple", "events", "values"]
    parts = [
        p
        async for p in mia.runs.stream(tid, "agent", command={"resume": APPROVE}, stream_mode=modes)
    ]
    assert {"checkpoints", "debug", "messages", "events"} <= {p.event for p in parts}
    checkpoint_payloads = [p.data for p in parts if p.event == "checkpoints"] + [
        p.data["payload"] for p in parts if p.event == "debug" and p.data["type"] == "checkpoint"
    ]
    for payload in checkpoint_payloads:
        for config in (payload["config"], payload["parent_config"]):
            if config is not None:
                assert config["configurable"]["thread_id"] == tid
                assert not IDENTITY & set(config["configurable"])
        assert not IDENTITY & set(payload["metadata"])
    for part in parts:
        if part.event == "messages":
            assert not IDENTITY & set(part.data[1])
        if part.event == "events":
            assert not IDENTITY & set(part.data.get("metadata") or {})
            assert not [t for t in part.data.get("tags") or [] if t.startswith("tenant:")]
    history = await pat.threads.get_history(tid, limit=50)
    state = await pat.threads.get_state(tid)
    for snapshot in [state, *history]:
        assert not IDENTITY & set(snapshot["metadata"] or {}), snapshot["metadata"]


async def test_checkpoint_and_debug_events_carry_no_server_identity(
    alice: LangGraphClient, mock_llm_clean: MockLLM
) -> None:
    tid = (await alice.threads.create())["thread_id"]
    parts = [
        p
        async for p in alice.runs.stream(
            tid, "agent", input=QUESTION, stream_mode=["checkpoints", "debug"]
        )
    ]
    checkpoints = [p.data for p in parts if p.event == "checkpoints"]
    debug = [
        p.data["payload"] for p in parts if p.event == "debug" and p.data["type"] == "checkpoint"
    ]
    assert checkpoints and debug
    for payload in [*checkpoints, *debug]:
        for config in (payload["config"], payload["parent_config"]):
            if config is None:
                continue
            configurable = config["configurable"]
            assert configurable["thread_id"] == tid and configurable["checkpoint_id"]
            leaked = {"user_id", "tenant_id", "role", "requester_id"} & set(configurable)
            assert not leaked, f"server identity in a public event: {leaked}"
    raw = json.dumps([p.data for p in parts])
    assert '"role"' not in raw and "requester_id" not in raw
