"""`langgraph dev` loads langgraph.json's `agent` graph and runs it unchanged (Studio path)."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from langgraph_sdk import get_client

from core.domain.orders import PgOrderStore
from core.settings import Settings
from mock_llm.process import free_port

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="langgraph_dev")
async def fx_langgraph_dev(settings: Settings) -> AsyncIterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": str(settings.database_url),
        "STEWARD_HOME": str(settings.home),
        "OPENAI_BASE_URL": str(settings.openai_base_url),
        "OPENAI_API_KEY": "test-key",
        "HF_HUB_OFFLINE": "1",
        "LANGSMITH_TRACING": "false",
    }
    cli = Path(sys.executable).parent / "langgraph"
    proc = await asyncio.create_subprocess_exec(
        str(cli),
        "dev",
        "--no-browser",
        "--no-reload",
        "--port",
        str(port),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as client:
            for _ in range(300):
                try:
                    if (await client.get(f"{url}/ok")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.returncode is not None:
                    break
                await asyncio.sleep(0.2)
            else:
                pytest.fail("langgraph dev did not start in 60 s")
        if proc.returncode is not None:
            assert proc.stderr is not None
            pytest.fail((await proc.stderr.read()).decode()[-3000:])
        yield url
    finally:
        proc.terminate()
        await proc.wait()


async def test_langgraph_dev_serves_the_agent_graph(
    langgraph_dev: str, orders: PgOrderStore, mock_llm_clean: Any
) -> None:
    client = get_client(url=langgraph_dev, api_key=None)
    [assistant] = await client.assistants.search(metadata={"created_by": "system"})
    assert assistant["graph_id"] == "agent"

    thread = await client.threads.create()
    answer = await client.runs.wait(
        thread["thread_id"],
        "agent",
        input={"messages": [{"role": "user", "content": "Is customer data encrypted at rest?"}]},
    )
    assert answer["response"]["sources"]

    paused = await client.runs.wait(
        thread["thread_id"],
        "agent",
        input={"messages": [{"role": "user", "content": "Refund $700 on LS-10007 please."}]},
    )
    [interrupt] = paused["__interrupt__"]
    assert interrupt["value"]["action_requests"][0]["name"] == "issue_refund"
    done = await client.runs.wait(
        thread["thread_id"],
        "agent",
        command={"resume": {"decisions": [{"type": "approve"}]}},
    )
    # The dev server has no identities and no approval queue: a resume carries a decision
    # nobody recorded, so the high-risk action is never released there.
    [action] = done["response"]["actions"]
    assert action["status"] == "failed" and "approval queue" in action["detail"]
    assert await orders.list_refunds("LS-10007") == []

    small = await client.runs.wait(
        thread["thread_id"],
        "agent",
        input={"messages": [{"role": "user", "content": "Refund $40 on LS-10002 please."}]},
    )
    assert small["response"]["actions"][0]["status"] == "executed"
    [row] = await orders.list_refunds("LS-10002")
    assert row["amount"] == "40.00"
