"""The agent-chat-ui path with the real SDK: threads, runs, state, interrupts, history.

Drives `steward serve` (blockbuster active) with the mock LLM and the real index.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e


def user_input(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def test_chat_ui_thread_lifecycle(server: RunningServer, mock_llm_clean: Any) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    client = server.client(await server.keys("alice", tenant))
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.url}/info")).status_code == 200

    thread = await client.threads.create()
    tid = thread["thread_id"]
    assert thread["status"] == "idle"

    values = await client.runs.wait(
        tid, "agent", input=user_input("Is customer data encrypted at rest?")
    )
    assert values["response"]["sources"], values

    # The sidebar lists threads by the metadata the server merges in on the first run.
    listed = await client.threads.search(metadata={"graph_id": "agent"})
    assert [t["thread_id"] for t in listed] == [tid]
    [listed_thread] = listed
    first = listed_thread["values"]["messages"][0]
    assert first["content"] == "Is customer data encrypted at rest?"

    state = await client.threads.get_state(tid)
    types = [m["type"] for m in state["values"]["messages"]]
    assert types[0] == "human" and types[-1] == "ai"
    assert state["next"] == [] and state["tasks"] == []

    # Fields the JS SDK's Thread type requires (`state_updated_at`) or reads (`config`).
    got: dict[str, Any] = dict(await client.threads.get(tid))  # the SDK types times as datetime
    stamp: str = got["state_updated_at"]
    assert datetime.fromisoformat(stamp) == datetime.fromisoformat(state["created_at"])
    assert stamp.endswith("Z") and got["created_at"].endswith("Z"), "one format for all times"
    assert got["config"] == {}
    assert thread["state_updated_at"] and thread["config"] == {}  # type: ignore[typeddict-item]
    assert state["checkpoint"]["thread_id"] == tid
    flat: dict[str, Any] = dict(state)  # the deprecated flat ids langgraph-api still sends
    assert flat["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]
    assert flat["parent_checkpoint_id"] == state["parent_checkpoint"]["checkpoint_id"]

    history = await client.threads.get_history(tid, limit=5)
    assert len(history) == 5
    steps = [h["metadata"]["step"] for h in history]
    assert steps == sorted(steps, reverse=True), "history is newest first"
    assert history[0]["checkpoint"]["checkpoint_id"] == state["checkpoint"]["checkpoint_id"]
    older = await client.threads.get_state(
        tid, checkpoint_id=history[-1]["checkpoint"]["checkpoint_id"]
    )
    assert older["metadata"]["step"] == steps[-1]


async def test_interrupted_thread_exposes_its_approval_everywhere(
    server: RunningServer, mock_llm_clean: Any, orders: Any
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    client = server.client(await server.keys("alice", tenant))
    tid = (await client.threads.create())["thread_id"]

    out = await client.runs.wait(tid, "agent", input=user_input("Refund $700 on LS-10007 please."))
    [interrupt] = out["__interrupt__"]
    assert interrupt["value"]["action_requests"][0]["name"] == "issue_refund"

    thread = await client.threads.get(tid)
    assert thread["status"] == "interrupted"
    [(task_id, [pending])] = thread["interrupts"].items()
    assert pending["id"] == interrupt["id"]

    state = await client.threads.get_state(tid)
    assert state["next"] == ["approval"]
    [task] = state["tasks"]
    assert task["id"] == task_id and task["name"] == "approval"
    assert task["interrupts"][0]["id"] == interrupt["id"]
    assert task["interrupts"][0]["response_schema"]["type"] == "object"
    assert state["interrupts"][0]["value"]["review_configs"][0]["allowed_decisions"] == [
        "approve",
        "edit",
        "reject",
    ]

    [listed] = await client.threads.search(status="interrupted")
    assert listed["thread_id"] == tid
