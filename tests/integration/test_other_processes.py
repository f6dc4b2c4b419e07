"""Processes that share only the database: resume elsewhere, and the terminal chat."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

import pytest
from langchain_core.runnables import RunnableConfig

from core.domain.orders import PgOrderStore
from core.settings import Settings
from graph.builder import DURABILITY
from graph.runtime import Runtime
from tests.run_context import context_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]

RESUME_SCRIPT = """
import asyncio, json, sys
from langgraph.types import Command
from steward.runtime import open_runtime
from core.settings import Settings
from graph.context import RunContext

async def main():
    async with open_runtime(Settings()) as rt:
        cfg = {"configurable": {"thread_id": sys.argv[1], "user_id": "manager-in-b"}}
        out = await rt.graph.ainvoke(Command(resume={"decisions": [{"type": "approve"}]}), cfg,
                                     context=RunContext(user_id="manager-in-b"),
                                     durability="sync")
        print(json.dumps(out["response"]))

asyncio.run(main())
"""


async def run_process(
    args: list[str], env: dict[str, str], stdin: str = ""
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *args,
        cwd=ROOT,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


def env_for(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": str(settings.database_url),
        "STEWARD_HOME": str(settings.home),
        "OPENAI_BASE_URL": str(settings.openai_base_url),
        "OPENAI_API_KEY": "test-key",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }


async def test_a_resume_from_another_process_cannot_invent_a_reviewer(
    runtime: Runtime, settings: Settings, orders: PgOrderStore, mock_llm_clean: None
) -> None:
    thread_id = str(uuid.uuid4())
    config: RunnableConfig = {"configurable": {"thread_id": thread_id, "user_id": "alice"}}
    paused = await runtime.graph.ainvoke(
        {"messages": [{"role": "user", "content": "Refund $700 on LS-10007 please."}]},
        config,
        context=context_for(config),
        durability=DURABILITY,
    )
    assert paused["__interrupt__"]
    code, out, err = await run_process(
        [sys.executable, "-c", RESUME_SCRIPT, thread_id], env_for(settings)
    )
    assert code == 0, err[-2000:]
    response = json.loads(out.strip().splitlines()[-1])
    assert response["actions"][0]["status"] == "failed"
    assert await orders.list_refunds("LS-10007") == []
    state = await runtime.graph.aget_state(config)
    assert state.next == () and state.values["response"] == response


async def test_terminal_chat_asks_for_approval_inline(
    settings: Settings, orders: PgOrderStore, mock_llm_clean: None
) -> None:
    script = (
        "What is the return window?\nRefund $40 on LS-10002 please.\n"
        "Refund $700 on LS-10007 please.\n/quit\n"
    )
    code, out, err = await run_process(
        [sys.executable, "-m", "steward", "chat"], env_for(settings), stdin=script
    )
    assert code == 0, err[-2000:]
    assert "Approval needed" in out
    assert "approval queue" in out
    [small] = await orders.list_refunds("LS-10002")
    assert small["amount"] == "40.00" and small["approved_by"] is None
    assert await orders.list_refunds("LS-10007") == []
