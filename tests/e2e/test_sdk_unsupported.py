"""The store and crons are not built: the SDK gets NotFoundError with a clear detail."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

import pytest
from langgraph_sdk.errors import NotFoundError

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e


async def test_store_and_crons_answer_not_found_clearly(server: RunningServer) -> None:
    client = server.client(await server.keys("sam", f"t-{uuid.uuid4().hex[:8]}", "user"))
    with pytest.raises(NotFoundError, match="store API"):
        await client.store.put_item(["ns"], "k", {"v": 1})
    with pytest.raises(NotFoundError, match="store API"):
        await client.store.search_items(["ns"])
    with pytest.raises(NotFoundError, match="cron"):
        await client.crons.create("agent", schedule="* * * * *", input={})
    thread = await client.threads.create()
    with pytest.raises(NotFoundError, match="cron"):
        await client.crons.create_for_thread(
            thread["thread_id"], "agent", schedule="* * * * *", input={}
        )
