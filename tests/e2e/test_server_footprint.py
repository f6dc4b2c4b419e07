"""A serving process embeds with ONNX Runtime: torch is never loaded, the footprint is small.

The server gets its own database, so the session `server` claims none of its runs and it
claims none of theirs: what it holds after one run is its own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langgraph_sdk import get_client

from core.db.migrate import migrate
from core.db.pool import open_pool
from core.settings import Settings
from mock_llm.process import MockLLM
from server.keys import KeyStore
from tests.serve_helpers import service_env, start_serve

pytestmark = pytest.mark.e2e

QUESTION: Any = {"messages": [{"role": "user", "content": "How long is the return window?"}]}
RSS_LIMIT_MIB = 600


def mapped_libraries(pid: int) -> set[str]:
    """The file names of the shared objects a process has mapped."""
    maps = Path(f"/proc/{pid}/maps").read_text(encoding="utf-8").splitlines()
    return {Path(line.split()[-1]).name for line in maps if ".so" in line}


def rss_mib(pid: int) -> float:
    """A process's resident set size, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


async def test_a_run_embeds_without_torch_in_a_small_process(
    scratch_database_url: str, steward_home: Path, mock_llm: MockLLM, tmp_path: Path
) -> None:
    own_db = scratch_database_url
    settings = Settings(database_url=own_db, db_pool_min=1, db_pool_max=2)
    async with open_pool(own_db, settings) as pool:
        await migrate(pool, own_db)
        key = await KeyStore(pool).create("alice", "acme", "user")
    env = service_env(
        DATABASE_URL=own_db,
        STEWARD_HOME=str(steward_home),
        OPENAI_BASE_URL=mock_llm.base_url,
        OPENAI_API_KEY="test-key",
    )
    served = start_serve(env, tmp_path / "serve.log")
    try:
        client = get_client(url=served.url, api_key=key)
        thread = await client.threads.create()
        result: Any = await client.runs.wait(thread["thread_id"], "agent", input=QUESTION)
        assert result["response"]["sources"], result  # retrieved: the model is loaded

        pid = served.process.pid
        libraries = mapped_libraries(pid)
        assert any(name.startswith("libonnxruntime") for name in libraries), sorted(libraries)
        assert not {n for n in libraries if n.startswith(("libtorch", "libc10"))}, "torch loaded"
        rss = rss_mib(pid)
        print(f"server RSS after its first run: {rss:.0f} MiB")
        assert rss < RSS_LIMIT_MIB, f"the server holds {rss:.0f} MiB after one run"
        await client.aclose()
    finally:
        served.stop()
