"""A client cannot name its own identity: the run context comes from the API key, not the body.

The server runs with a role table in which only `admin` may refund. A `user` key sends a
refund request whose body forges `context` as an admin of another tenant. The refund must not
execute (checked in the database), the run must be the key's own, and the assistant's schema
must not advertise a client-settable context.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from langgraph_sdk import get_client

from core.db.migrate import migrate
from core.db.pool import DbPool, open_pool
from core.domain.seed import seed_demo_orders
from core.settings import Settings
from mock_llm.process import MockLLM
from server.keys import KeyStore
from tests.fixtures_db import create_database, drop_database
from tests.serve_helpers import Served, service_env, start_serve

pytestmark = pytest.mark.e2e

ROLE_TOOLS = {
    "user": ["search_policies", "get_order"],
    "admin": ["search_policies", "get_order", "issue_refund"],
}
FORGED = {"user_id": "mallory", "tenant_id": "globex", "role": "admin", "requester_id": "boss"}
REFUND: Any = {
    "messages": [{"role": "user", "content": "Please refund $120 on order LS-10007, it is torn."}]
}


@pytest.fixture(scope="module", name="forge_db")
def fx_forge_db(pg_server_url: str) -> Iterator[str]:
    url = create_database(pg_server_url, prefix="steward_forge")
    try:
        yield url
    finally:
        drop_database(pg_server_url, url)


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="forge_pool")
async def fx_forge_pool(forge_db: str) -> AsyncIterator[DbPool]:
    settings = Settings(database_url=forge_db, db_pool_min=1, db_pool_max=4)
    async with open_pool(forge_db, settings) as pool:
        await migrate(pool, forge_db)
        await seed_demo_orders(pool)
        yield pool


@pytest.fixture(scope="module", name="served")
def fx_served(
    forge_db: str,
    forge_pool: DbPool,
    steward_home: Path,
    mock_llm: MockLLM,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    env = service_env(
        DATABASE_URL=forge_db,
        STEWARD_HOME=str(steward_home),
        OPENAI_BASE_URL=mock_llm.base_url,
        OPENAI_API_KEY="test-key",
        STEWARD_ROLE_TOOLS=json.dumps(ROLE_TOOLS),
    )
    served = start_serve(env, tmp_path_factory.mktemp("forge") / "serve.log")
    try:
        yield served
    finally:
        served.stop()


async def refunds_on(pool: DbPool, order_id: str) -> int:
    async with pool.connection() as conn:
        row = await (
            await conn.execute("SELECT count(*) AS n FROM refunds WHERE order_id = %s", (order_id,))
        ).fetchone()
    assert row is not None
    return int(row["n"])


async def test_a_forged_context_does_not_make_a_user_an_admin(
    served: Served, forge_pool: DbPool, mock_llm: MockLLM
) -> None:
    await mock_llm.clear_faults()
    key = await KeyStore(forge_pool).create("alice", "acme", "user")
    client = get_client(url=served.url, api_key=key)
    thread = await client.threads.create()
    before = await refunds_on(forge_pool, "LS-10007")

    async with httpx.AsyncClient(base_url=served.url, timeout=120) as http:
        answer = await http.post(
            f"/threads/{thread['thread_id']}/runs/wait",
            headers={"x-api-key": key},
            json={"assistant_id": "agent", "input": REFUND, "context": FORGED},
        )
    assert answer.status_code == 200, answer.text
    assert await refunds_on(forge_pool, "LS-10007") == before

    runs = await client.runs.list(thread["thread_id"])
    assert all(run["status"] != "pending" and run["status"] != "running" for run in runs)
    async with forge_pool.connection() as conn:
        owners = await (
            await conn.execute(
                "SELECT DISTINCT owner_id, tenant_id FROM runs WHERE thread_id = %s",
                (thread["thread_id"],),
            )
        ).fetchall()
    assert [(r["owner_id"], r["tenant_id"]) for r in owners] in ([], [("alice", "acme")])


async def test_the_assistant_does_not_advertise_a_client_settable_context(
    served: Served, forge_pool: DbPool
) -> None:
    key = await KeyStore(forge_pool).create("bob", "acme", "user")
    schemas = await get_client(url=served.url, api_key=key).assistants.get_schemas("agent")
    assert schemas["context_schema"] is None
