"""`threads.copy` and `threads.prune` with the real SDK, checked against the database."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from langgraph_sdk.errors import ConflictError, NotFoundError

from core.db.pool import DbPool
from core.settings import Settings
from mock_llm.process import MockLLM

if TYPE_CHECKING:
    from langgraph_sdk.client import LangGraphClient

    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e


def said(text: str) -> Any:
    return {"messages": [{"role": "user", "content": text}]}


async def checkpoint_rows(pool: DbPool, thread_id: str) -> dict[str, int]:
    async with pool.connection() as conn:
        counts = {}
        for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes"):
            cur = await conn.execute(
                f"SELECT count(*) AS n FROM {table} WHERE thread_id = %s",
                (thread_id,),
            )
            row = await cur.fetchone()
            assert row is not None
            counts[table] = row["n"]
        return counts


async def answered_thread(client: LangGraphClient) -> str:
    tid: str = (await client.threads.create(metadata={"topic": "returns"}))["thread_id"]
    await client.runs.wait(tid, "agent", input=said("How long is the return window?"))
    return tid


async def test_a_copy_carries_the_conversation_and_nothing_that_happened_on_it(
    server: RunningServer, db_pool: DbPool, mock_llm_clean: MockLLM
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    alice = server.client(await server.keys("alice", tenant))
    source = await answered_thread(alice)

    # The SDK types `copy` as None; the API answers the new Thread, as langgraph-api does.
    copy: Any = await alice.threads.copy(source)  # type: ignore[func-returns-value]
    tid = copy["thread_id"]
    assert tid != source and copy["metadata"]["topic"] == "returns"
    assert copy["status"] == "idle"
    assert await checkpoint_rows(db_pool, tid) == await checkpoint_rows(db_pool, source)
    before: Any = await alice.threads.get_state(source)
    assert (await alice.threads.get_state(tid))["values"] == before["values"]
    assert await alice.runs.list(tid) == [], "runs stay with the source"

    # The copy goes on from the conversation; the source does not move.
    await alice.runs.wait(tid, "agent", input=said("And for electronics?"))
    grown: Any = (await alice.threads.get_state(tid))["values"]
    assert len(grown["messages"]) > len(before["values"]["messages"])
    assert (await alice.threads.get_state(source))["values"] == before["values"]


async def test_copy_is_scoped_and_refuses_a_thread_waiting_for_approval(
    server: RunningServer, db_pool: DbPool, mock_llm_clean: MockLLM
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    alice = server.client(await server.keys("alice", tenant))
    bob = server.client(await server.keys("bob", tenant))
    eve = server.client(await server.keys("eve", f"other-{tenant}", "admin"))
    source = await answered_thread(alice)
    for outsider in (bob, eve):
        with pytest.raises(NotFoundError):
            await outsider.threads.copy(source)

    held: str = (await alice.threads.create())["thread_id"]
    out: Any = await alice.runs.wait(held, "agent", input=said("Refund $600 on LS-10017 please."))
    assert out["__interrupt__"]
    with pytest.raises(ConflictError, match="interrupted"):
        await alice.threads.copy(held)

    # A failed thread continues with `input: null`: its step is retried on it, not on a copy.
    failed = (await alice.threads.create())["thread_id"]
    fail_run: Any = {
        "kind": "status",
        "status": 500,
        "count": Settings.model_fields["llm_max_attempts"].default,
    }
    await mock_llm_clean.add_faults([fail_run])
    await alice.runs.wait(failed, "agent", input=said("Where is LS-10001?"), raise_error=False)
    assert (await alice.threads.get(failed))["status"] == "error"
    with pytest.raises(ConflictError, match="error"):
        await alice.threads.copy(failed)
    async with db_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM threads WHERE tenant_id = %s", (tenant,)
        )
        row = await cur.fetchone()
    assert row is not None and row["n"] == 3, "no thread was left behind by the refusals"


async def test_prune_keeps_the_latest_state_or_deletes_and_skips_what_is_not_yours(
    server: RunningServer, db_pool: DbPool, mock_llm_clean: MockLLM
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    alice = server.client(await server.keys("alice", tenant))
    eve = server.client(await server.keys("eve", f"other-{tenant}"))
    mine = await answered_thread(alice)
    theirs = await answered_thread(eve)
    state = await alice.threads.get_state(mine)
    assert len(await alice.threads.get_history(mine, limit=50)) > 1

    kept = await alice.threads.prune([mine, theirs], strategy="keep_latest")
    assert kept == {"pruned_count": 1}
    [latest] = await alice.threads.get_history(mine, limit=50)
    assert latest["checkpoint"] == state["checkpoint"]
    assert latest["values"] == state["values"]
    assert len(await eve.threads.get_history(theirs, limit=50)) > 1, "eve's history is intact"
    await alice.runs.wait(mine, "agent", input=said("And for electronics?"))  # still usable

    deleted = await alice.threads.prune([mine, theirs, str(uuid.uuid4())])
    assert deleted == {"pruned_count": 1}
    with pytest.raises(NotFoundError):
        await alice.threads.get(mine)
    assert (await checkpoint_rows(db_pool, mine))["checkpoints"] == 0
    assert (await eve.threads.get(theirs))["thread_id"] == theirs
