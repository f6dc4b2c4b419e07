"""Pytest plugin: the mock LLM server as a subprocess (`python -m steward.mock_llm`).

Fixtures:
- `mock_llm` (session): starts the server on a free loopback port and yields a `MockLLM`.
- `mock_llm_clean` (function): the same server with its fault queue and request log cleared.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class MockLLM:
    """Handle on a running mock server; `base_url` is what ChatOpenAI needs (ends in /v1)."""

    root_url: str
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    async def _call(self, method: str, path: str, json: Any = None) -> httpx.Response:
        async with httpx.AsyncClient(base_url=self.root_url, timeout=10.0) as client:
            response = await client.request(method, path, json=json)
        response.raise_for_status()
        return response

    async def add_faults(self, faults: list[dict[str, Any]]) -> None:
        """Queue faults; each applies to the next `count` chat requests, FIFO."""
        await self._call("POST", "/_mock/faults", json=faults)

    async def clear_faults(self) -> None:
        await self._call("DELETE", "/_mock/faults")

    async def requests(self) -> list[dict[str, Any]]:
        """Return the chat request bodies the server received, oldest first."""
        data: list[dict[str, Any]] = (await self._call("GET", "/_mock/requests")).json()
        return data

    async def clear_requests(self) -> None:
        await self._call("DELETE", "/_mock/requests")

    async def stats(self) -> dict[str, Any]:
        data: dict[str, Any] = (await self._call("GET", "/_mock/stats")).json()
        return data


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(root_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"mock LLM exited with code {process.returncode} before becoming healthy:\n"
                f"{log.read_text(errors='replace')}"
            )
        try:
            if httpx.get(f"{root_url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    process.kill()
    pytest.fail(
        f"mock LLM did not answer {root_url}/health within {STARTUP_TIMEOUT_S:.0f} s:\n"
        f"{log.read_text(errors='replace')}"
    )


@pytest.fixture(scope="session", name="mock_llm")
def fx_mock_llm() -> Iterator[MockLLM]:
    """Run the mock LLM server for the whole test session."""
    port = _free_port()
    root_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="mock-llm-") as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "steward.mock_llm", "--host", "127.0.0.1", "--port",
                 str(port)],
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_healthy(root_url, process, log)
            yield MockLLM(root_url=root_url, process=process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture(name="mock_llm_clean")
async def fx_mock_llm_clean(mock_llm: MockLLM) -> AsyncIterator[MockLLM]:
    """The session's mock LLM with no queued faults and an empty request log."""
    await mock_llm.clear_faults()
    await mock_llm.clear_requests()
    yield mock_llm
