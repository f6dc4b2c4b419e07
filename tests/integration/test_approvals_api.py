"""The approval queue over HTTP: refund over $500 → pending approval → one decision → one refund."""

from __future__ import annotations

import asyncio
import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from core.db.pool import DbPool
from core.domain.orders import PgOrderStore

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.integration

REFUND_700 = {"messages": [{"role": "user", "content": "Refund $700 on LS-10007 please."}]}


class Api:
    """A tiny httpx wrapper for the approvals routes (not part of the SDK)."""

    def __init__(self, server: RunningServer, key: str | None) -> None:
        headers = {"x-api-key": key} if key else {}
        self.http = httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30)

    async def get(self, path: str, **params: Any) -> httpx.Response:
        return await self.http.get(path, params=params)

    async def decide(self, approval_id: str, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post(f"/approvals/{approval_id}/decision", json=body)


async def interrupted_thread(server: RunningServer, user_key: str) -> str:
    client = server.client(user_key)
    tid: str = (await client.threads.create())["thread_id"]
    out = await client.runs.wait(tid, "agent", input=REFUND_700)
    assert out["__interrupt__"][0]["value"]["action_requests"][0]["name"] == "issue_refund"
    return tid


async def pending_approval_of(api: Api, tid: str) -> dict[str, Any]:
    for _ in range(50):
        listed = (await api.get("/approvals", status="pending")).json()
        mine: list[dict[str, Any]] = [a for a in listed if a["thread_id"] == tid]
        if mine:
            [approval] = mine
            return approval
        await asyncio.sleep(0.1)
    raise AssertionError(f"no pending approval for thread {tid}")


async def test_refund_over_threshold_is_released_once_by_an_approver(
    server: RunningServer, db_pool: DbPool, orders: PgOrderStore, mock_llm_clean: Any
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    alice_key = await server.keys("alice", tenant, "user")
    paula = Api(server, await server.keys("paula", tenant, "approver"))
    alice = Api(server, alice_key)
    otto = Api(server, await server.keys("otto", f"other-{tenant}", "approver"))
    tid = await interrupted_thread(server, alice_key)

    approval = await pending_approval_of(paula, tid)
    aid = approval["approval_id"]
    assert approval["status"] == "pending" and approval["requester_id"] == "alice"
    [action] = approval["action"]["action_requests"]
    assert action["name"] == "issue_refund" and action["args"]["order_id"] == "LS-10007"

    detail = (await paula.get(f"/approvals/{aid}")).json()
    context = detail["context"]
    assert context["requester"] == "alice"
    assert context["messages"][0]["content"] == REFUND_700["messages"][0]["content"]
    assert context["messages"][-1]["type"] == "ai" and context["messages"][-1]["tool_calls"]
    assert context["citations"] and all(c["id"] for c in context["citations"])

    # Users may not see or decide approvals; other tenants do not see them at all.
    assert (await alice.get("/approvals")).status_code == 403
    assert (await alice.get(f"/approvals/{aid}")).status_code == 403
    forbidden = await alice.decide(aid, {"type": "approve"})
    assert forbidden.status_code == 403 and "approver" in forbidden.json()["detail"]
    assert (await Api(server, None).get("/approvals")).status_code == 401
    assert (await otto.get(f"/approvals/{aid}")).status_code == 404
    assert (await otto.decide(aid, {"type": "approve"})).status_code == 404
    assert all(a["approval_id"] != aid for a in (await otto.get("/approvals")).json())
    assert await orders.list_refunds("LS-10007") == []

    decided = await paula.decide(aid, {"type": "approve", "comment": "customer is VIP"})
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert body["status"] == "approved" and body["decided_by"] == "paula"
    assert body["comment"] == "customer is VIP" and body["decided_at"]
    run_id = body["run"]["run_id"]
    assert body["resume_run_id"] == run_id

    second = await paula.decide(aid, {"type": "reject"})
    assert second.status_code == 409
    assert "already approved by paula" in second.json()["detail"]

    client = server.client(alice_key)
    final = await client.runs.join(tid, run_id)
    [done] = final["response"]["actions"]
    assert done["status"] == "executed"
    assert (await client.threads.get(tid))["status"] == "idle"

    [refund] = await PgOrderStore(db_pool).list_refunds("LS-10007")
    assert refund["amount"] == "700.00" and refund["approved_by"] == "paula"

    after = (await paula.get(f"/approvals/{aid}")).json()
    assert after["status"] == "approved" and after["decision"]["decisions"][0]["type"] == "approve"
    assert all(
        a["status"] != "pending"
        for a in (await paula.get("/approvals")).json()
        if a["thread_id"] == tid
    )


async def test_concurrent_decisions_release_one_resume(
    server: RunningServer, db_pool: DbPool, orders: PgOrderStore, mock_llm_clean: Any
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    alice_key = await server.keys("alice", tenant)
    deciders = [Api(server, await server.keys(f"appr-{i}", tenant, "approver")) for i in range(3)]
    tid = await interrupted_thread(server, alice_key)
    aid = (await pending_approval_of(deciders[0], tid))["approval_id"]

    answers = await asyncio.gather(*(d.decide(aid, {"type": "approve"}) for d in deciders))
    assert sorted(a.status_code for a in answers) == [200, 409, 409]
    [winner] = [a.json() for a in answers if a.status_code == 200]
    await server.client(alice_key).runs.join(tid, winner["run"]["run_id"])
    [refund] = await PgOrderStore(db_pool).list_refunds("LS-10007")
    assert refund["approved_by"] == winner["decided_by"]


async def test_reject_and_invalid_edits(
    server: RunningServer, db_pool: DbPool, orders: PgOrderStore, mock_llm_clean: Any
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    alice_key = await server.keys("alice", tenant)
    admin = Api(server, await server.keys("ada", tenant, "admin"))
    tid = await interrupted_thread(server, alice_key)
    aid = (await pending_approval_of(admin, tid))["approval_id"]

    wrong_tool = await admin.decide(
        aid,
        {"type": "edit", "edited_action": {"name": "get_order", "args": {"order_id": "LS-10007"}}},
    )
    assert wrong_tool.status_code == 422 and "not the tool" in wrong_tool.json()["detail"]
    bad_args = await admin.decide(
        aid,
        {
            "type": "edit",
            "edited_action": {
                "name": "issue_refund",
                "args": {"order_id": "LS-10007", "amount": "-5", "reason": "x"},
            },
        },
    )
    assert bad_args.status_code == 422 and "edited_action.args" in bad_args.json()["detail"]
    missing = await admin.decide(aid, {"type": "edit"})
    assert missing.status_code == 422 and "edited_action" in missing.json()["detail"]
    assert (await admin.get(f"/approvals/{aid}")).json()["status"] == "pending"

    rejected = await admin.decide(aid, {"type": "reject", "comment": "not eligible"})
    assert rejected.status_code == 200, rejected.text
    assert rejected.json()["status"] == "rejected"
    final = await server.client(alice_key).runs.join(tid, rejected.json()["run"]["run_id"])
    assert final["response"]["actions"][0]["status"] == "rejected"
    assert await PgOrderStore(db_pool).list_refunds("LS-10007") == []

    # Filters: pending first; status; time window; nobody looks at another tenant.
    assert (await admin.get("/approvals", status="pending")).json() == []
    rejected_list = (await admin.get("/approvals", status="rejected")).json()
    assert [a["approval_id"] for a in rejected_list] == [aid]
    assert (await admin.get("/approvals", newer_than="2999-01-01T00:00:00Z")).json() == []
    assert (await admin.get("/approvals", older_than="2999-01-01T00:00:00Z")).json()
    assert (await admin.get("/approvals", tenant="nobody-else")).status_code == 403
    assert (await admin.get("/approvals", tenant="*")).status_code == 403
    approver = Api(server, await server.keys("paula", tenant, "approver"))
    assert (await approver.get("/approvals", tenant="nobody-else")).status_code == 403
    assert (await admin.get("/approvals", status="bogus")).status_code == 422


async def test_pending_approvals_come_first(
    server: RunningServer, orders: PgOrderStore, mock_llm_clean: Any
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    alice_key = await server.keys("alice", tenant)
    approver = Api(server, await server.keys("paula", tenant, "approver"))
    older = await interrupted_thread(server, alice_key)
    await pending_approval_of(approver, older)
    newer = await interrupted_thread(server, alice_key)
    aid = (await pending_approval_of(approver, newer))["approval_id"]
    decided = await approver.decide(aid, {"type": "reject"})
    await server.client(alice_key).runs.join(newer, decided.json()["run"]["run_id"])

    listed = (await approver.get("/approvals")).json()
    assert [a["thread_id"] for a in listed] == [older, newer], "pending first, even if older"
    assert [a["status"] for a in listed] == ["pending", "rejected"]
