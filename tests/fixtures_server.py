"""Pytest plugin: the real HTTP service as a subprocess (`python -m steward serve`).

Fixtures:
- `server` (session): starts the service on a free loopback port against the session database,
  the test index and the mock LLM, with `STEWARD_BLOCKBUSTER=1` (a blocking call on the event
  loop raises); waits for `/readyz` (60 s) and yields a `RunningServer`.

`RunningServer.keys(user, tenant, role)` creates an API key through `KeyStore` on the test
pool; `RunningServer.client(key)` returns a `langgraph_sdk` client for it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient

from core.db.pool import DbPool
from core.identity import Role
from mock_llm.process import MockLLM
from server.keys import KeyStore

__all__ = ["KeyMaker", "RunningServer", "fx_server"]

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 120.0
"""Start-up loads the embedding model and the PII analyser: over 60 s on two loaded cores."""


def free_port() -> int:
    """Return a TCP port that is free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve_command(port: int) -> list[str]:
    """`python -m steward serve` on `port`."""
    return [sys.executable, "-m", "steward", "serve", "--port", str(port)]


@dataclass
class KeyMaker:
    """Create API keys directly in the database (the server verifies them)."""

    pool: DbPool

    async def __call__(self, user: str, tenant: str = "acme", role: Role = "user") -> str:
        """Create a key for `user@tenant` with `role` and return it."""
        return await KeyStore(self.pool).create(user, tenant, role)

    async def revoke(self, key: str) -> None:
        """Revoke a raw key."""
        await KeyStore(self.pool).revoke(key.split("_")[1])


@dataclass
class RunningServer:
    """A started `steward serve` process."""

    url: str
    keys: KeyMaker
    process: subprocess.Popen[bytes]
    log_path: Path
    clients: list[LangGraphClient] = field(default_factory=list)

    def client(self, api_key: str | None, **kwargs: Any) -> LangGraphClient:
        """A langgraph-sdk client for this server (`api_key=None` sends no key)."""
        return get_client(url=self.url, api_key=api_key, **kwargs)

    def log(self) -> str:
        """The server's combined stdout/stderr so far."""
        return self.log_path.read_text(errors="replace")


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"steward serve exited with {proc.returncode} before it was ready:\n"
                f"{log_path.read_text(errors='replace')[-8000:]}"
            )
        try:
            r = httpx.get(f"{url}/readyz", timeout=2.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.25)
    proc.terminate()
    pytest.fail(
        f"steward serve was not ready after {START_TIMEOUT_S:.0f}s (last /readyz: {last}):\n"
        f"{log_path.read_text(errors='replace')[-8000:]}"
    )


@pytest.fixture(scope="session", name="server")
def fx_server(
    database_url: str,
    steward_home: Path,
    mock_llm: MockLLM,
    db_pool: DbPool,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    """Run `steward serve` for the whole session and stop it at the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("server") / "server.log"
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "STEWARD_HOME": str(steward_home),
        "STEWARD_ENV": "development",
        "OPENAI_BASE_URL": mock_llm.base_url,
        "OPENAI_API_KEY": "test-key",
        "STEWARD_LLM_TIMEOUT_S": "5",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "STEWARD_BLOCKBUSTER": "1",
        "STEWARD_RATE_LIMIT_PER_MINUTE": "0",  # tests poll freely; tests/unit/test_rate_limit.py
        "STEWARD_SHUTDOWN_DELAY_S": "0",  # no load balancer to drain; tests/e2e/test_drain.py
        "STEWARD_DB_POOL_MAX": "8",  # servers of two workers share one Postgres
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            serve_command(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(proc, url, log_path)
        yield RunningServer(url=url, keys=KeyMaker(db_pool), process=proc, log_path=log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
