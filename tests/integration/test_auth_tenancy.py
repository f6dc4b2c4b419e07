"""Authentication (401) and tenancy (404 across tenants and owners) through the real SDK."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import AuthenticationError, ConflictError, NotFoundError

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.integration


def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


async def test_missing_wrong_and_revoked_keys_are_401(server: RunningServer) -> None:
    t = tenant()
    anonymous = server.client(None)
    with pytest.raises(AuthenticationError) as missing:
        await anonymous.threads.search()
    assert "API key" in missing.value.response.json()["detail"]
    with pytest.raises(AuthenticationError):
        await server.client("stw_00000000_" + "a" * 32).threads.create()
    with pytest.raises(AuthenticationError):
        await server.client("not-a-key").threads.get(str(uuid.uuid4()))

    good = await server.keys("alice", t)
    tampered = good[:-1] + ("A" if good[-1] != "A" else "B")
    with pytest.raises(AuthenticationError):
        await server.client(tampered).threads.search()

    revoked = await server.keys("mallory", t)
    await server.keys.revoke(revoked)
    with pytest.raises(AuthenticationError):
        await server.client(revoked).threads.search()

    async with httpx.AsyncClient(base_url=server.url) as http:
        bearer = await http.post(
            "/threads/count", json={}, headers={"Authorization": f"Bearer {good}"}
        )
        assert bearer.status_code == 200, bearer.text
        assert bearer.json() == 0
        no_key = await http.post("/threads/count", json={})
        assert no_key.status_code == 401
        assert no_key.json()["detail"].startswith("missing API key")
        # Public probes need no key.
        assert (await http.get("/info")).status_code == 200


async def _all_routes_404(client: LangGraphClient, tid: str, checkpoint_id: str) -> None:
    calls: list[Any] = [
        client.threads.get(tid),
        client.threads.update(tid, metadata={"x": 1}),
        client.threads.get_state(tid),
        client.threads.get_state(tid, checkpoint_id=checkpoint_id),
        client.threads.get_state(tid, checkpoint={"checkpoint_id": checkpoint_id}),
        client.threads.update_state(
            tid, {"messages": [{"role": "user", "content": "x"}]}, as_node="input_filter"
        ),
        client.threads.get_history(tid),
        client.threads.delete(tid),
        client.runs.list(tid),
        client.runs.create(tid, "agent", input={"messages": [{"role": "user", "content": "hi"}]}),
    ]
    for call in calls:
        with pytest.raises(NotFoundError):
            await call


async def _thread_with_state(
    client: LangGraphClient, admin: LangGraphClient, **metadata: Any
) -> tuple[str, str | None]:
    """A thread owned by `client`, with a state written by an admin of its tenant."""
    tid = (await client.threads.create(metadata=metadata))["thread_id"]
    update = await admin.threads.update_state(
        tid, {"messages": [{"role": "user", "content": "secret"}]}, as_node="input_filter"
    )
    return tid, update["checkpoint"]["checkpoint_id"]


async def test_other_tenants_threads_are_invisible(server: RunningServer) -> None:
    a, b = tenant(), tenant()
    alice = server.client(await server.keys("alice", a))
    bob = server.client(await server.keys("bob", b))
    b_admin = server.client(await server.keys("root", b, "admin"))
    a_admin = server.client(await server.keys("root", a, "admin"))
    tid, checkpoint_id = await _thread_with_state(alice, a_admin, marker="a-only")

    await _all_routes_404(bob, tid, checkpoint_id)
    await _all_routes_404(b_admin, tid, checkpoint_id)
    # A taken id is 409 whoever holds it: the answer is the one its owner gets, so a create
    # tells another tenant only what any create must (the id is not free), nothing of the thread.
    with pytest.raises(ConflictError) as own:
        await alice.threads.create(thread_id=tid)
    for client in (bob, b_admin):
        assert await client.threads.search(metadata={"marker": "a-only"}) == []
        assert await client.threads.search(ids=[tid]) == []
        assert await client.threads.count(metadata={"marker": "a-only"}) == 0
        with pytest.raises(ConflictError) as foreign:
            await client.threads.create(thread_id=tid)
        assert foreign.value.response.json() == own.value.response.json()
        with pytest.raises(ConflictError):
            await client.threads.create(thread_id=tid, if_exists="do_nothing")

    thread = await alice.threads.get(tid)
    assert thread["metadata"] == {"marker": "a-only"}, "tenant B changed nothing"
    assert [m["content"] for m in thread["values"]["messages"]] == ["secret"]


async def test_users_see_only_their_own_threads_approvers_see_the_tenant(
    server: RunningServer,
) -> None:
    t = tenant()
    xavier = server.client(await server.keys("xavier", t))
    yvonne = server.client(await server.keys("yvonne", t))
    approver = server.client(await server.keys("paula", t, "approver"))
    admin = server.client(await server.keys("ada", t, "admin"))
    outsider_approver = server.client(await server.keys("otto", tenant(), "approver"))
    y_tid, checkpoint_id = await _thread_with_state(yvonne, admin, owner="y")
    x_tid, _ = await _thread_with_state(xavier, admin, owner="x")

    await _all_routes_404(outsider_approver, y_tid, checkpoint_id)
    assert [t["thread_id"] for t in await xavier.threads.search()] == [x_tid]
    assert await xavier.threads.count() == 1
    assert await yvonne.threads.count() == 1

    for staff in (approver, admin):
        assert {t["thread_id"] for t in await staff.threads.search()} == {x_tid, y_tid}
        assert await staff.threads.count() == 2
        state = await staff.threads.get_state(y_tid)
        assert state["values"]["messages"][0]["content"] == "secret"

    await _all_routes_404(xavier, y_tid, checkpoint_id)
    assert (await yvonne.threads.get(y_tid))["metadata"] == {"owner": "y"}
