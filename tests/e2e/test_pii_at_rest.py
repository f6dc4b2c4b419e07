"""Raw PII sent through the API is stored nowhere: not in runs, run events or checkpoints."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest

from core.db.pool import DbPool

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e

EMAIL = "jane.doe.pii@example.com"
CARD = "4111 1111 1111 1111"


async def test_pii_in_a_run_input_is_not_stored(server: RunningServer, db_pool: DbPool) -> None:
    client = server.client(await server.keys("pat", f"t-{uuid.uuid4().hex[:8]}", "user"))
    thread = await client.threads.create()
    text = f"My email is {EMAIL} and my card is {CARD}. How long is the return window?"
    out = await client.runs.wait(
        thread["thread_id"], "agent", input={"messages": [{"role": "user", "content": text}]}
    )
    assert isinstance(out, dict) and out["response"]["answer"]
    queries = {
        table: f"SELECT t::text AS row FROM {table} t WHERE t.thread_id::text = %s"
        for table in ("runs", "checkpoints", "checkpoint_blobs", "checkpoint_writes")
    }
    queries["run_events"] = (
        "SELECT e::text AS row FROM run_events e JOIN runs r USING (run_id)"
        " WHERE r.thread_id::text = %s"
    )
    async with db_pool.connection() as conn:
        for table, query in queries.items():
            rows = await (await conn.execute(query, (thread["thread_id"],))).fetchall()
            dump = "\n".join(r["row"] for r in rows)
            assert dump, f"nothing stored in {table}?"
            assert EMAIL not in dump, f"raw email stored in {table}"
            assert CARD not in dump and CARD.replace(" ", "") not in dump, table
