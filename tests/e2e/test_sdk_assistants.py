"""Assistants through the real `langgraph_sdk` client against `steward serve`.

CRUD and versions, search and count, tenant isolation, the read-only system assistant,
configs that would forge identity, and runs that take their defaults from an assistant.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langgraph_sdk.client import LangGraphClient
from langgraph_sdk.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    UnprocessableEntityError,
)

from mock_llm.process import MockLLM

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e

SYSTEM_ASSISTANT_ID = str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), "agent"))
QUESTION: Any = {"messages": [{"role": "user", "content": "How long is the return window?"}]}


async def status_of(call: Awaitable[Any]) -> int:
    """The HTTP status a call failed with (`runs.wait` raises httpx's error, not the SDK's)."""
    try:
        await call
    except httpx.HTTPStatusError as exc:
        return exc.response.status_code
    raise AssertionError("the call succeeded")


def new_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture(name="tenant")
def fx_tenant() -> str:
    return new_tenant()


@pytest.fixture(name="admin")
async def fx_admin(server: RunningServer, tenant: str) -> LangGraphClient:
    return server.client(await server.keys("root", tenant, "admin"))


@pytest.fixture(name="alice")
async def fx_alice(server: RunningServer, tenant: str) -> LangGraphClient:
    return server.client(await server.keys("alice", tenant, "user"))


async def test_create_get_update_versions_latest_delete(admin: LangGraphClient) -> None:
    created = await admin.assistants.create(
        "agent",
        config={"configurable": {"tone": "brief"}, "tags": ["vip"]},
        context={"locale": "de"},
        metadata={"team": "billing"},
        name="Billing desk",
        description="Answers billing questions.",
    )
    aid = created["assistant_id"]
    assert str(uuid.UUID(aid)) == aid and aid != SYSTEM_ASSISTANT_ID
    assert created["version"] == 1 and created["graph_id"] == "agent"
    assert created["config"] == {"configurable": {"tone": "brief"}, "tags": ["vip"]}
    assert created["context"] == {"locale": "de"}
    assert created["name"] == "Billing desk"
    assert await admin.assistants.get(aid) == created

    v2 = await admin.assistants.update(
        aid, config={"configurable": {"tone": "warm"}}, metadata={"stage": "beta"}
    )
    assert v2["version"] == 2
    assert v2["metadata"] == {"team": "billing", "stage": "beta"}  # merged
    assert v2["config"] == {"configurable": {"tone": "warm"}}  # replaced
    assert v2["context"] == {"locale": "de"} and v2["name"] == "Billing desk"  # kept
    assert v2["created_at"] == created["created_at"]
    assert v2["updated_at"] >= created["updated_at"]

    versions = await admin.assistants.get_versions(aid)
    assert [v["version"] for v in versions] == [2, 1]
    assert versions[1]["config"] == created["config"]
    assert [v["version"] for v in await admin.assistants.get_versions(aid, limit=1)] == [2]
    assert [v["version"] for v in await admin.assistants.get_versions(aid, offset=1)] == [1]
    beta = await admin.assistants.get_versions(aid, metadata={"stage": "beta"})
    assert [v["version"] for v in beta] == [2]

    back = await admin.assistants.set_latest(aid, 1)
    assert back["version"] == 1 and back["config"] == created["config"]
    assert (await admin.assistants.get(aid))["version"] == 1
    v3 = await admin.assistants.update(aid, name="Billing")  # from version 1, numbered 3
    assert v3["version"] == 3 and v3["config"] == created["config"] and v3["name"] == "Billing"
    with pytest.raises(NotFoundError):
        await admin.assistants.set_latest(aid, 99)

    # The graph routes answer for a created assistant as for the system one.
    graph = await admin.assistants.get_graph(aid)
    assert {"agent", "approval"} <= {n["id"] for n in graph["nodes"]}
    schemas: Any = await admin.assistants.get_schemas(aid)
    assert "messages" in schemas["input_schema"]["properties"]
    assert await admin.assistants.get_subgraphs(aid) == {}

    await admin.assistants.delete(aid)
    for call in (
        admin.assistants.get(aid),
        admin.assistants.get_versions(aid),
        admin.assistants.update(aid, name="x"),
        admin.assistants.delete(aid),
        admin.assistants.get_graph(aid),
    ):
        with pytest.raises(NotFoundError):
            await call


async def test_create_ids_if_exists_and_graphs(admin: LangGraphClient) -> None:
    chosen = str(uuid.uuid4())
    first = await admin.assistants.create("agent", assistant_id=chosen, metadata={"n": 1})
    assert first["assistant_id"] == chosen and first["name"] == "Untitled"
    with pytest.raises(ConflictError):
        await admin.assistants.create("agent", assistant_id=chosen)
    same = await admin.assistants.create(
        "agent", assistant_id=chosen, if_exists="do_nothing", metadata={"n": 2}
    )
    assert same == first
    with pytest.raises(ConflictError):  # the system assistant's id is taken
        await admin.assistants.create("agent", assistant_id=SYSTEM_ASSISTANT_ID)
    with pytest.raises(NotFoundError):
        await admin.assistants.create("other-graph")
    with pytest.raises(NotFoundError):
        await admin.assistants.update(chosen, graph_id="other-graph")
    with pytest.raises(UnprocessableEntityError):
        await admin.assistants.create("agent", assistant_id="not-a-uuid")
    with pytest.raises(NotFoundError):
        await admin.assistants.get("not-a-uuid")


async def test_search_and_count(admin: LangGraphClient, alice: LangGraphClient) -> None:
    names = ["Gamma desk", "alpha desk", "Beta desk"]
    ids = []
    for i, name in enumerate(names):
        a = await admin.assistants.create(
            "agent", name=name, metadata={"kind": "desk", "i": i, "odd": i % 2 == 1}
        )
        ids.append(a["assistant_id"])
    # Newest first by default; the system assistant (the oldest) comes last.
    everything = await alice.assistants.search(limit=10)
    assert [a["assistant_id"] for a in everything] == [*reversed(ids), SYSTEM_ASSISTANT_ID]
    desks = await alice.assistants.search(metadata={"kind": "desk"}, sort_by="name")
    assert [a["name"] for a in desks] == ["Gamma desk", "Beta desk", "alpha desk"]  # desc
    asc = await alice.assistants.search(metadata={"kind": "desk"}, sort_by="name", sort_order="asc")
    assert [a["name"] for a in asc] == ["alpha desk", "Beta desk", "Gamma desk"]
    page = await alice.assistants.search(
        metadata={"kind": "desk"}, sort_by="name", sort_order="asc", limit=1, offset=1
    )
    assert [a["name"] for a in page] == ["Beta desk"]
    assert [a["assistant_id"] for a in await alice.assistants.search(name="ALPHA")] == [ids[1]]
    assert len(await alice.assistants.search(graph_id="agent")) == 4
    assert await alice.assistants.search(graph_id="other") == []
    [system] = await alice.assistants.search(metadata={"created_by": "system"})
    assert system["assistant_id"] == SYSTEM_ASSISTANT_ID
    selected: Any = await alice.assistants.search(
        metadata={"i": 0}, select=["assistant_id", "name"]
    )
    assert selected == [{"assistant_id": ids[0], "name": "Gamma desk"}]

    assert await alice.assistants.count() == 4
    assert await alice.assistants.count(metadata={"odd": True}) == 1
    assert await alice.assistants.count(name="desk") == 3
    assert await alice.assistants.count(graph_id="agent", metadata={"kind": "desk"}) == 3

    response = await alice.assistants.search(limit=2, response_format="object")
    assert response["next"] == "2"


async def test_another_tenants_assistant_is_404_everywhere(
    server: RunningServer, admin: LangGraphClient
) -> None:
    mine = await admin.assistants.create("agent", name="mine", config={"tags": ["a"]})
    aid = mine["assistant_id"]
    other_tenant = new_tenant()
    for role in ("admin", "user"):
        other = server.client(await server.keys("eve", other_tenant, role))
        for call in (
            other.assistants.get(aid),
            other.assistants.update(aid, name="stolen"),
            other.assistants.delete(aid),
            other.assistants.get_versions(aid),
            other.assistants.set_latest(aid, 1),
            other.assistants.get_graph(aid),
            other.assistants.get_schemas(aid),
            other.runs.wait(None, aid, input=QUESTION),
        ):
            assert await status_of(call) == 404
        thread = await other.threads.create()
        with pytest.raises(NotFoundError):
            await other.runs.create(thread["thread_id"], aid, input=QUESTION)
        assert aid not in {a["assistant_id"] for a in await other.assistants.search(limit=100)}
        assert await other.assistants.count() == 1  # the system assistant only
    # The same id in another tenant is another assistant, and says nothing about the first.
    other_admin = server.client(await server.keys("eve", other_tenant, "admin"))
    theirs = await other_admin.assistants.create("agent", assistant_id=aid, name="theirs")
    assert theirs["name"] == "theirs" and theirs["version"] == 1
    assert (await admin.assistants.get(aid))["name"] == "mine"


async def test_system_assistant_is_read_only_and_writes_need_admin(
    server: RunningServer, tenant: str, admin: LangGraphClient, alice: LangGraphClient
) -> None:
    for aid in ("agent", SYSTEM_ASSISTANT_ID):
        for call in (
            admin.assistants.update(aid, metadata={"x": 1}),
            admin.assistants.delete(aid),
            admin.assistants.set_latest(aid, 1),
        ):
            with pytest.raises(PermissionDeniedError) as denied:
                await call
            assert "read-only" in denied.value.response.json()["detail"]
    assert [v["version"] for v in await alice.assistants.get_versions("agent")] == [1]

    shared = await admin.assistants.create("agent", name="shared")
    aid = shared["assistant_id"]
    approver = server.client(await server.keys("bob", tenant, "approver"))
    for client in (alice, approver):
        for call in (
            client.assistants.create("agent"),
            client.assistants.update(aid, name="mine now"),
            client.assistants.delete(aid),
            client.assistants.set_latest(aid, 1),
        ):
            with pytest.raises(PermissionDeniedError) as denied:
                await call
            assert "role admin" in denied.value.response.json()["detail"]
        assert (await client.assistants.get(aid))["name"] == "shared"  # reads are tenant-wide


@pytest.mark.parametrize(
    ("config", "context"),
    [
        ({"configurable": {"user_id": "mallory"}}, None),
        ({"configurable": {"tenant_id": "globex"}}, None),
        ({"configurable": {"role": "admin"}}, None),
        ({"configurable": {"requester_id": "boss"}}, None),
        ({"configurable": {"thread_id": str(uuid.uuid4())}}, None),
        ({"configurable": {"checkpoint_id": "1"}}, None),
        ({"configurable": {"__pregel_x": 1}}, None),
        ({"callbacks": []}, None),
        ({"recursion_limit": 10**6}, None),
        (None, {"role": "admin"}),
        (None, {"tenant_id": "globex"}),
    ],
    ids=[
        "user_id",
        "tenant_id",
        "role",
        "requester_id",
        "thread_id",
        "checkpoint",
        "dunder",
        "unknown-key",
        "recursion",
        "context-role",
        "context-tenant",
    ],
)
async def test_forged_configs_are_422(admin: LangGraphClient, config: Any, context: Any) -> None:
    with pytest.raises(UnprocessableEntityError) as refused:
        await admin.assistants.create("agent", config=config, context=context)
    assert refused.value.response.json()["detail"]
    ok = await admin.assistants.create("agent", config={"configurable": {"tone": "x"}})
    with pytest.raises(UnprocessableEntityError):
        await admin.assistants.update(ok["assistant_id"], config=config, context=context)
    assert (await admin.assistants.get(ok["assistant_id"]))["version"] == 1


async def test_created_by_system_is_reserved(admin: LangGraphClient) -> None:
    with pytest.raises(UnprocessableEntityError):
        await admin.assistants.create("agent", metadata={"created_by": "system"})


async def test_runs_use_the_assistants_config_under_their_own(
    admin: LangGraphClient, alice: LangGraphClient, mock_llm_clean: MockLLM
) -> None:
    config: Any = {
        "configurable": {"tone": "brief", "team": "billing"},
        "tags": ["vip"],
        "metadata": {"campaign": "spring"},
    }
    assistant = await admin.assistants.create(
        "agent", config=config, context={"locale": "de", "channel": "email"}
    )
    aid = assistant["assistant_id"]
    thread = await alice.threads.create()
    tid = thread["thread_id"]
    values: Any = await alice.runs.wait(
        tid,
        aid,
        input=QUESTION,
        config={"configurable": {"tone": "friendly"}},
        context={"channel": "web"},
    )
    assert values["response"]["answer"], values
    runs: list[Any] = await alice.runs.list(tid)
    [run] = runs
    assert run["assistant_id"] == aid and run["status"] == "success"
    assert run["kwargs"]["config"]["configurable"] == {"tone": "friendly", "team": "billing"}
    assert run["kwargs"]["config"]["tags"] == ["vip"]
    assert run["kwargs"]["context"] == {"locale": "de", "channel": "web"}
    # The graph ran with it: LangGraph copies config metadata and configurable values into
    # the checkpoint's metadata.
    state = await alice.threads.get_state(tid)
    meta = state["metadata"] or {}
    assert meta["assistant_id"] == aid
    assert (meta["team"], meta["tone"], meta["campaign"]) == ("billing", "friendly", "spring")
    assert "user_id" not in run["kwargs"]["config"].get("configurable", {})
    # agent-chat-ui lists threads by the assistant the server merges into their metadata.
    listed = await alice.threads.search(metadata={"assistant_id": aid})
    assert [t["thread_id"] for t in listed] == [tid]

    # A later version changes new runs, not the runs already made.
    await admin.assistants.update(aid, config={"configurable": {"team": "returns"}})
    stateless: Any = await alice.runs.wait(None, aid, input=QUESTION)
    assert stateless["response"]["answer"]
    parts = [
        p
        async for p in alice.runs.stream(
            None, aid, input=QUESTION, stream_mode="values", config={"tags": ["mine"]}
        )
    ]
    assert parts[0].event == "metadata" and parts[-1].event == "values"
    first: Any = await alice.runs.get(tid, run["run_id"])
    assert first["kwargs"]["config"]["configurable"] == {"tone": "friendly", "team": "billing"}
    background = await alice.runs.create(tid, aid, input=QUESTION)
    await alice.runs.join(tid, background["run_id"])
    newer: Any = await alice.runs.get(tid, background["run_id"])
    assert newer["assistant_id"] == aid
    assert newer["kwargs"]["config"]["configurable"] == {"team": "returns"}
    assert newer["kwargs"]["context"] == {"locale": "de", "channel": "email"}


@settings(
    max_examples=8,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("update"), st.integers(0, 3)),
            st.tuples(st.just("latest"), st.integers(1, 8)),
        ),
        min_size=1,
        max_size=6,
    )
)
async def test_latest_is_the_last_update_or_set_latest_target(
    admin: LangGraphClient, steps: list[tuple[str, int]]
) -> None:
    """Whatever the sequence, `get` shows the version written or chosen last, in full."""
    created = await admin.assistants.create("agent", config={"configurable": {"n": -1}})
    aid = created["assistant_id"]
    written = {1: {"configurable": {"n": -1}}}
    latest = 1
    for op, arg in steps:
        if op == "update":
            config: Any = {"configurable": {"n": arg}}
            got = await admin.assistants.update(aid, config=config)
            assert got["version"] == max(written) + 1
            written[got["version"]] = config
            latest = got["version"]
        elif arg in written:
            got = await admin.assistants.set_latest(aid, arg)
            latest = arg
        else:
            with pytest.raises(NotFoundError):
                await admin.assistants.set_latest(aid, arg)
        current = await admin.assistants.get(aid)
        assert current["version"] == latest
        assert current["config"] == written[latest]
    versions = await admin.assistants.get_versions(aid, limit=100)
    assert [v["version"] for v in versions] == sorted(written, reverse=True)
    assert {v["version"]: v["config"] for v in versions} == written
