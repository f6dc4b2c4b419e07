"""Run the mock LLM server as a subprocess on a free loopback port (tests, benches, evals)."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

STARTUP_TIMEOUT_S = 20.0


class MockLLMStartError(RuntimeError):
    """The mock server did not become healthy; the message carries its log."""


@dataclass(frozen=True)
class MockLLM:
    """Handle on a running mock server; `base_url` is what ChatOpenAI needs (ends in /v1)."""

    root_url: str
    process: subprocess.Popen[bytes]

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL."""
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
        """Drop every queued fault."""
        await self._call("DELETE", "/_mock/faults")

    async def requests(self) -> list[dict[str, Any]]:
        """Return the chat request bodies the server received, oldest first."""
        data: list[dict[str, Any]] = (await self._call("GET", "/_mock/requests")).json()
        return data

    async def clear_requests(self) -> None:
        """Empty the request log."""
        await self._call("DELETE", "/_mock/requests")

    async def stats(self) -> dict[str, Any]:
        """Return request and fault counters."""
        data: dict[str, Any] = (await self._call("GET", "/_mock/stats")).json()
        return data


def free_port() -> int:
    """Return a loopback TCP port that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_healthy(root_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MockLLMStartError(
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
    raise MockLLMStartError(
        f"mock LLM did not answer {root_url}/health within {STARTUP_TIMEOUT_S:.0f} s:\n"
        f"{log.read_text(errors='replace')}"
    )


@contextmanager
def running_mock_llm(
    *, latency_ms: int = 0, stream_delay_ms: int = 0, error_rate: float = 0.0
) -> Iterator[MockLLM]:
    """Start `python -m mock_llm` on a free port; stop it on exit."""
    port = free_port()
    root_url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="mock-llm-") as tmp:
        log = Path(tmp) / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(  # noqa: S603  # fixed argv, our own module
                [
                    sys.executable,
                    "-m",
                    "mock_llm",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--latency-ms",
                    str(latency_ms),
                    "--stream-delay-ms",
                    str(stream_delay_ms),
                    "--error-rate",
                    str(error_rate),
                ],
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
