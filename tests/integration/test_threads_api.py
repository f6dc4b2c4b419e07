"""Threads, assistants and meta routes through the real langgraph-sdk against `steward serve`."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from langgraph_sdk.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
)

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.integration

SYSTEM_ASSISTANT_ID = str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), "agent"))


@pytest.fixture(name="tenant")
def fx_tenant() -> str:
    """A fresh tenant per test, so searches and counts only see this test's threads."""
    return f"t-{uuid.uuid4().hex[:8]}"


async def test_meta_routes(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        assert (await http.get("/ok")).json() == {"ok": True}
        assert (await http.get("/healthz")).status_code == 200
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        info = (await http.get("/info")).json()
        assert info["flags"]["assistants"] is True
        assert "version" in info
        docs = await http.get("/docs")
        assert docs.status_code == 200
        spec = (await http.get("/docs/openapi.json")).json()
        assert "/threads/search" in spec["paths"]
        assert (await http.get("/openapi.json")).json() == spec  # where langgraph-api has it


async def test_assistants(server: RunningServer, tenant: str) -> None:
    client = server.client(await server.keys("alice", tenant))
    [assistant] = await client.assistants.search(metadata={"created_by": "system"})
    assert assistant["assistant_id"] == SYSTEM_ASSISTANT_ID
    assert assistant["graph_id"] == "agent"
    assert (await client.assistants.get("agent"))["assistant_id"] == SYSTEM_ASSISTANT_ID
    assert (await client.assistants.get(SYSTEM_ASSISTANT_ID))["name"] == "agent"
    assert await client.assistants.search(graph_id="other") == []
    assert await client.assistants.count(graph_id="agent") == 1
    graph = await client.assistants.get_graph(SYSTEM_ASSISTANT_ID)
    assert {"approval", "agent", "run_tools"} <= {n["id"] for n in graph["nodes"]}
    schemas = await client.assistants.get_schemas("agent")
    assert "messages" in schemas["input_schema"]["properties"]
    assert "response" in schemas["state_schema"]["properties"]
    assert await client.assistants.get_subgraphs("agent") == {}
    with pytest.raises(NotFoundError):
        await client.assistants.get(str(uuid.uuid4()))
    with pytest.raises(PermissionDeniedError) as denied:  # a user key: writes need admin
        await client.assistants.create(graph_id="agent")
    assert "role admin" in denied.value.response.json()["detail"]
    with pytest.raises(PermissionDeniedError) as denied:
        await client.assistants.update("agent", metadata={"a": 1})
    assert "read-only" in denied.value.response.json()["detail"]


async def test_thread_crud(server: RunningServer, tenant: str) -> None:
    client = server.client(await server.keys("alice", tenant))
    thread = await client.threads.create(metadata={"topic": "refund"})
    tid = thread["thread_id"]
    assert thread["status"] == "idle"
    assert thread["metadata"] == {"topic": "refund"}
    assert thread["interrupts"] == {}

    got = await client.threads.get(tid)
    assert got["thread_id"] == tid and got["metadata"] == {"topic": "refund"}

    patched = await client.threads.update(tid, metadata={"priority": "high"})
    assert patched["metadata"] == {"topic": "refund", "priority": "high"}
    assert patched["updated_at"] >= thread["updated_at"]

    with pytest.raises(ConflictError):
        await client.threads.create(thread_id=tid)
    same = await client.threads.create(thread_id=tid, if_exists="do_nothing")
    assert same["metadata"]["priority"] == "high"

    chosen = str(uuid.uuid4())
    assert (await client.threads.create(thread_id=chosen))["thread_id"] == chosen

    async with server.keys.pool.connection() as conn:
        await conn.execute("UPDATE threads SET status = 'busy' WHERE thread_id = %s", (tid,))
    with pytest.raises(PermissionDeniedError):  # a user never writes state (docs/integrity.md)
        await client.threads.update_state(tid, {"messages": []}, as_node="agent")
    assert (await client.threads.search(status="busy"))[0]["thread_id"] == tid
    async with server.keys.pool.connection() as conn:
        await conn.execute("UPDATE threads SET status = 'idle' WHERE thread_id = %s", (tid,))

    await client.threads.delete(tid)
    with pytest.raises(NotFoundError):
        await client.threads.get(tid)
    with pytest.raises(NotFoundError):
        await client.threads.delete(tid)


async def test_unknown_ids_are_404(server: RunningServer, tenant: str) -> None:
    client = server.client(await server.keys("alice", tenant))
    missing = str(uuid.uuid4())
    with pytest.raises(NotFoundError):
        await client.threads.get(missing)
    with pytest.raises(NotFoundError):
        await client.threads.get("not-a-uuid")
    with pytest.raises(NotFoundError):
        await client.threads.get_state(missing)
    with pytest.raises(NotFoundError):
        await client.threads.get_history(missing)
    with pytest.raises(NotFoundError):
        await client.threads.update(missing, metadata={"a": 1})


async def test_search_and_count(server: RunningServer, tenant: str) -> None:
    client = server.client(await server.keys("alice", tenant))
    created = [
        await client.threads.create(metadata={"kind": "even" if i % 2 == 0 else "odd", "i": i})
        for i in range(5)
    ]
    assert await client.threads.count() == 5
    assert await client.threads.count(metadata={"kind": "even"}) == 3
    evens = await client.threads.search(metadata={"kind": "even"}, limit=10)
    assert sorted(t["metadata"]["i"] for t in evens) == [0, 2, 4]

    newest_first = await client.threads.search(limit=2, offset=0)
    next_page = await client.threads.search(limit=2, offset=2)
    last_page = await client.threads.search(limit=2, offset=4)
    ids = [t["thread_id"] for t in [*newest_first, *next_page, *last_page]]
    assert ids == [t["thread_id"] for t in reversed(created)]

    oldest_first = await client.threads.search(limit=10, sort_by="created_at", sort_order="asc")
    assert [t["thread_id"] for t in oldest_first] == [t["thread_id"] for t in created]

    subset = await client.threads.search(ids=[created[1]["thread_id"], created[3]["thread_id"]])
    assert {t["thread_id"] for t in subset} == {created[1]["thread_id"], created[3]["thread_id"]}
    assert await client.threads.search(status="busy") == []
    assert len(await client.threads.search(status="idle")) == 5
    selected = await client.threads.search(limit=1, select=["thread_id", "metadata"])
    assert set(selected[0]) == {"thread_id", "metadata"}
    with pytest.raises(UnprocessableEntityError):  # a typo is named, not silently dropped
        await client.threads.search(select=["thread_id", "metdata"])  # type: ignore[list-item]
    # The JS SDK's `sortBy: "state_updated_at"`: a thread patched last comes first.
    await client.threads.update(created[2]["thread_id"], metadata={"touched": True})
    recent = await client.threads.search(limit=1, sort_by="state_updated_at")
    assert recent[0]["thread_id"] == created[2]["thread_id"]


async def test_state_update_and_history(server: RunningServer, tenant: str) -> None:
    client = server.client(await server.keys("ada", tenant, "admin"))  # state writes: admins
    tid = (await client.threads.create())["thread_id"]
    empty = await client.threads.get_state(tid)
    assert empty["values"] == {} and empty["checkpoint"] is None

    first = await client.threads.update_state(
        tid, {"messages": [{"role": "user", "content": "hello"}]}, as_node="input_filter"
    )
    first_id = first["checkpoint"]["checkpoint_id"]
    assert first["checkpoint"]["thread_id"] == tid
    second = await client.threads.update_state(
        tid, {"messages": [{"role": "ai", "content": "hi there", "id": "m-2"}]}, as_node="agent"
    )
    second_id = second["checkpoint"]["checkpoint_id"]
    assert second_id != first_id

    state = await client.threads.get_state(tid)
    assert state["checkpoint"]["checkpoint_id"] == second_id
    assert state["parent_checkpoint"]["checkpoint_id"] == first_id
    messages = state["values"]["messages"]
    assert [m["type"] for m in messages] == ["human", "ai"]
    assert messages[0]["content"] == "hello" and messages[1]["id"] == "m-2"
    assert isinstance(state["next"], list) and isinstance(state["tasks"], list)
    assert state["metadata"]["source"] == "update"

    at_first = await client.threads.get_state(tid, checkpoint_id=first_id)
    assert [m["content"] for m in at_first["values"]["messages"]] == ["hello"]
    by_body = await client.threads.get_state(
        tid, checkpoint={"checkpoint_id": first_id, "checkpoint_ns": ""}
    )
    assert by_body["checkpoint"]["checkpoint_id"] == first_id
    with pytest.raises(NotFoundError):
        await client.threads.get_state(tid, checkpoint_id=str(uuid.uuid4()))

    history = await client.threads.get_history(tid)
    ids = [h["checkpoint"]["checkpoint_id"] for h in history]
    assert ids[:2] == [second_id, first_id], "newest first"
    assert len(await client.threads.get_history(tid, limit=1)) == 1
    older = await client.threads.get_history(
        tid, before={"configurable": {"checkpoint_id": second_id}}
    )
    assert older[0]["checkpoint"]["checkpoint_id"] == first_id
    # The GET form some SDK calls use: the same states, `limit` and `before` as parameters.
    key = await server.keys("ada", tenant, "admin")
    async with httpx.AsyncClient(base_url=server.url, headers={"x-api-key": key}) as http:
        by_get = (await http.get(f"/threads/{tid}/history")).json()
        assert [h["checkpoint"]["checkpoint_id"] for h in by_get] == ids
        page = await http.get(f"/threads/{tid}/history", params={"limit": 1, "before": second_id})
        assert [h["checkpoint"]["checkpoint_id"] for h in page.json()] == [first_id]
        assert (await http.get(f"/threads/{tid}/history", params={"limit": 0})).status_code == 422
        other = await server.keys("eve", f"other-{tenant}", "admin")
        hidden = await http.get(f"/threads/{tid}/history", headers={"x-api-key": other})
        assert hidden.status_code == 404

    thread = await client.threads.get(tid)
    assert [m["content"] for m in thread["values"]["messages"]] == ["hello", "hi there"]

    with pytest.raises(UnprocessableEntityError) as bad_node:
        await client.threads.update_state(tid, {"messages": []}, as_node="no_such_node")
    assert "no_such_node" in str(bad_node.value.response.json()["detail"])

    await client.threads.delete(tid)
    async with server.keys.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM checkpoints WHERE thread_id = %s", (tid,)
        )
        row = await cur.fetchone()
    assert row is not None and row["n"] == 0, "deleting a thread deletes its checkpoints"


async def _post(server: RunningServer, key: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url, headers={"x-api-key": key}) as http:
        return await http.post(path, **kwargs)


async def test_bad_bodies(server: RunningServer, tenant: str) -> None:
    key = await server.keys("alice", tenant)
    wrong_type = await _post(server, key, "/threads", json={"metadata": "not an object"})
    assert wrong_type.status_code == 422
    assert "metadata" in wrong_type.json()["detail"]

    bad_limit = await _post(server, key, "/threads/search", json={"limit": 0})
    assert bad_limit.status_code == 422 and "limit" in bad_limit.json()["detail"]

    unknown = await _post(server, key, "/threads", json={"ttl": {"ttl": 5}})
    assert unknown.status_code == 422 and "ttl" in unknown.json()["detail"]

    malformed = await _post(
        server,
        key,
        "/threads",
        content=b'{"metadata": {',
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 422
    assert "JSON" in malformed.json()["detail"]

    too_big = await _post(
        server, key, "/threads", json={"metadata": {"blob": "x" * (2 * 1024 * 1024)}}
    )
    assert too_big.status_code == 413
    assert "too large" in too_big.json()["detail"]

    client = server.client(key)
    with pytest.raises(UnprocessableEntityError):
        await client.threads.search(values={"x": 1})
