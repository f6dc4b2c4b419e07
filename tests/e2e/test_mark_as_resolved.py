"""agent-chat-ui's "Mark as resolved" (`command.goto: "__end__"`) and "respond" (a reject
with a message), sent as its `thread.submit({}, {command})` posts them."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from core.db.pool import DbPool
from mock_llm.process import MockLLM

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e

BIG_REFUND: Any = {"messages": [{"role": "user", "content": "Refund $600 on LS-10017 please."}]}


def submit_body(state: dict[str, Any], command: dict[str, Any]) -> dict[str, Any]:
    """What agent-chat-ui's `thread.submit({}, {command, streamSubgraphs: true})` posts."""
    return {
        "input": {},
        "command": command,
        "stream_mode": ["messages-tuple", "values", "custom"],
        "stream_subgraphs": True,
        "on_disconnect": "cancel",
        "checkpoint": state["checkpoint"],
        "assistant_id": "agent",
    }


async def held_refund(server: RunningServer, tenant: str) -> str:
    """A thread of `pat`'s whose $600 refund waits for an approver."""
    client = server.client(await server.keys("pat", tenant, "user"))
    tid: str = (await client.threads.create())["thread_id"]
    out = await client.runs.wait(tid, "agent", input=BIG_REFUND)
    assert isinstance(out, dict) and out["__interrupt__"]
    return tid


async def approval_row(pool: DbPool, thread_id: str) -> dict[str, Any]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, decided_by, comment,"
            " (SELECT count(*) FROM refunds r WHERE r.thread_id = a.thread_id::text) AS refunds"
            " FROM approvals a WHERE thread_id = %s",
            (uuid.UUID(thread_id),),
        )
        row = await cur.fetchone()
    assert row is not None
    return dict(row)


async def post(server: RunningServer, key: str, path: str, body: Any) -> httpx.Response:
    async with httpx.AsyncClient(
        base_url=server.url, headers={"x-api-key": key}, timeout=60
    ) as http:
        if body is None:
            return await http.get(path)
        return await http.post(path, json=body)


async def test_an_approver_marks_a_held_refund_as_resolved(
    server: RunningServer, db_pool: DbPool, mock_llm_clean: MockLLM
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    tid = await held_refund(server, tenant)
    requester = await server.keys("pat", tenant, "user")
    approver = await server.keys("mia", tenant, "approver")
    state = (await post(server, approver, f"/threads/{tid}/state", None)).json()
    resolve = submit_body(state, {"goto": "__end__"})

    refused = await post(server, requester, f"/threads/{tid}/runs/stream", resolve)
    assert refused.status_code == 403, refused.text
    assert "approver" in refused.json()["detail"]
    outsider = await server.keys("mia", f"t-{uuid.uuid4().hex[:8]}", "approver")
    assert (await post(server, outsider, f"/threads/{tid}/runs/stream", resolve)).status_code == 404
    assert (await approval_row(db_pool, tid))["status"] == "pending"

    done = await post(server, approver, f"/threads/{tid}/runs/stream", resolve)
    assert done.status_code == 200, done.text
    assert "event: error" not in done.text
    row = await approval_row(db_pool, tid)
    assert row["status"] == "rejected" and row["decided_by"] == "mia"
    assert "resolved" in row["comment"] and row["refunds"] == 0
    after = (await post(server, approver, f"/threads/{tid}", None)).json()
    assert after["status"] == "idle" and not after["interrupts"]

    again = await post(server, approver, f"/threads/{tid}/runs/stream", resolve)
    assert again.status_code == 409, "nothing waits any more"
    assert (await approval_row(db_pool, tid))["refunds"] == 0


async def test_respond_is_a_rejection_whose_message_reaches_the_model(
    server: RunningServer, db_pool: DbPool, mock_llm_clean: MockLLM
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    tid = await held_refund(server, tenant)
    approver = await server.keys("mia", tenant, "approver")
    state = (await post(server, approver, f"/threads/{tid}/state", None)).json()
    note = "Offer store credit instead; the order is past the refund window."
    command = {"resume": {"decisions": [{"type": "reject", "message": note}]}}
    await mock_llm_clean.clear_requests()
    done = await post(server, approver, f"/threads/{tid}/runs/stream", submit_body(state, command))
    assert done.status_code == 200, done.text
    seen = [m.get("content") or "" for r in await mock_llm_clean.requests() for m in r["messages"]]
    assert any(note in text for text in seen), "the reviewer's words reach the model"
    row = await approval_row(db_pool, tid)
    assert row["status"] == "rejected" and row["comment"] == note and row["refunds"] == 0
