"""Attacks on assistants that a hostile review found working, now refused (real server, DB)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from core.db.pool import DbPool
from mock_llm.process import MockLLM
from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e

SYS = str(uuid.uuid5(uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8"), "agent"))
QUESTION: Any = {"messages": [{"role": "user", "content": "How long is the return window?"}]}


def new_tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


async def client(server: RunningServer, user: str, tenant: str, role: str) -> httpx.AsyncClient:
    key = await server.keys(user, tenant, role)  # type: ignore[arg-type]
    return httpx.AsyncClient(base_url=server.url, headers={"x-api-key": key}, timeout=120)


async def rows(pool: DbPool, query: str, *args: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(query, args)
        return [dict(r) for r in await cur.fetchall()]


@pytest.mark.parametrize("key", ["role", "requester_id", "user_id", "tenant_id"])
async def test_an_assistant_names_no_identity_in_its_config_metadata(
    server: RunningServer, key: str
) -> None:
    """Shared by a tenant, an assistant may not say who acts, in metadata either (422)."""
    tenant = new_tenant()
    admin = await client(server, "root", tenant, "admin")
    forged = {"config": {"metadata": {key: "boss"}}}
    created = await admin.post("/assistants", json={"graph_id": "agent", **forged})
    assert created.status_code == 422 and key in created.json()["detail"]
    aid = (await admin.post("/assistants", json={"graph_id": "agent"})).json()["assistant_id"]
    patched = await admin.patch(f"/assistants/{aid}", json=forged)
    assert patched.status_code == 422 and key in patched.json()["detail"]


async def test_checkpoints_record_who_really_acts_whatever_the_metadata_says(
    server: RunningServer, db_pool: DbPool, mock_llm_clean: MockLLM
) -> None:
    """A run's own `metadata` is the client's; the identity in its records is the key's.

    LangGraph keeps a metadata key over the configurable value it would copy into every
    checkpoint's metadata, so a forged `role` there would falsify the audit trail.
    """
    tenant = new_tenant()
    alice = await client(server, "alice", tenant, "user")
    forged = {"role": "admin", "requester_id": "boss", "user_id": "mallory", "tenant_id": "x"}
    tid = (await alice.post("/threads", json={})).json()["thread_id"]
    refused = await alice.post(
        f"/threads/{tid}/runs/wait",
        json={"assistant_id": "agent", "input": QUESTION, "config": {"metadata": forged}},
    )
    assert refused.status_code == 422
    ran = await alice.post(
        f"/threads/{tid}/runs/wait",
        json={"assistant_id": "agent", "input": QUESTION, "metadata": forged},
    )
    assert ran.status_code == 200, ran.text
    checkpoints = await rows(db_pool, "SELECT metadata FROM checkpoints WHERE thread_id = %s", tid)
    assert checkpoints
    for c in checkpoints:
        who = {k: c["metadata"].get(k) for k in forged}
        assert who == {
            "role": "user",
            "requester_id": "alice",
            "user_id": "alice",
            "tenant_id": tenant,
        }, who


async def test_delete_threads_finds_the_threads_under_any_spelling_of_the_id(
    server: RunningServer, db_pool: DbPool, mock_llm_clean: MockLLM
) -> None:
    """`DELETE /assistants/<UPPERCASE-UUID>?delete_threads=true` takes its threads too: the
    id is read as a UUID, and threads record the canonical one."""
    tenant = new_tenant()
    admin = await client(server, "root", tenant, "admin")
    alice = await client(server, "alice", tenant, "user")
    aid = (await admin.post("/assistants", json={"graph_id": "agent"})).json()["assistant_id"]
    tid = (await alice.post("/threads", json={})).json()["thread_id"]
    ran = await alice.post(
        f"/threads/{tid}/runs/wait", json={"assistant_id": aid, "input": QUESTION}
    )
    assert ran.status_code == 200, ran.text
    assert (
        await rows(
            db_pool,
            "SELECT metadata->>'assistant_id' AS a FROM threads WHERE thread_id = %s",
            uuid.UUID(tid),
        )
    )[0]["a"] == aid

    deleted = await admin.delete(f"/assistants/{aid.upper()}", params={"delete_threads": "true"})
    assert deleted.status_code == 204
    assert not await rows(
        db_pool, "SELECT 1 FROM assistants WHERE assistant_id = %s", uuid.UUID(aid)
    )
    left = await rows(db_pool, "SELECT 1 FROM threads WHERE thread_id = %s", uuid.UUID(tid))
    assert not left, "assistant deleted with delete_threads=true, but its thread was kept"


async def test_delete_threads_refused_for_a_busy_thread_deletes_nothing(
    server: RunningServer, db_pool: DbPool, mock_llm_clean: MockLLM
) -> None:
    """A busy thread refuses the whole delete (409) before any thread goes."""
    tenant = new_tenant()
    admin = await client(server, "root", tenant, "admin")
    alice = await client(server, "alice", tenant, "user")
    aid = (await admin.post("/assistants", json={"graph_id": "agent"})).json()["assistant_id"]
    idle = (await alice.post("/threads", json={})).json()["thread_id"]
    ran = await alice.post(
        f"/threads/{idle}/runs/wait", json={"assistant_id": aid, "input": QUESTION}
    )
    assert ran.status_code == 200
    busy = (await alice.post("/threads", json={})).json()["thread_id"]
    queued = await alice.post(
        f"/threads/{busy}/runs", json={"assistant_id": aid, "input": QUESTION, "after_seconds": 300}
    )
    assert queued.status_code == 200, queued.text

    refused = await admin.delete(f"/assistants/{aid}", params={"delete_threads": "true"})
    assert refused.status_code == 409
    assert (await admin.get(f"/assistants/{aid}")).status_code == 200
    left = await rows(db_pool, "SELECT 1 FROM threads WHERE thread_id = %s", uuid.UUID(idle))
    assert left, "the request was refused (409) yet alice's idle thread is gone"
    assert "nothing was deleted" in refused.json()["detail"]


@pytest.mark.parametrize(
    "spelling", [SYS.upper(), SYS.replace("-", ""), "{" + SYS + "}", "urn:uuid:" + SYS]
)
async def test_the_system_assistant_answers_to_every_spelling_of_its_id(
    server: RunningServer, spelling: str
) -> None:
    """Like a tenant's assistants, the system one is found by any spelling `uuid.UUID` reads."""
    tenant = new_tenant()
    admin = await client(server, "root", tenant, "admin")
    mine = (await admin.post("/assistants", json={"graph_id": "agent"})).json()["assistant_id"]
    assert (await admin.get(f"/assistants/{mine.upper()}")).status_code == 200
    assert (await admin.get(f"/assistants/{spelling}")).status_code == 200
