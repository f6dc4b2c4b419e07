"""Helpers for tests that start, signal and watch their own `steward serve` processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

from tests.fixtures_server import ROOT, free_port, serve_command

T = TypeVar("T")


@dataclass
class Served:
    """A `steward serve` process started by a test."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        """Its combined stdout/stderr so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """Terminate it if it still runs (test teardown); kill it if it does not go."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def service_env(**overrides: str) -> dict[str, str]:
    """The environment a test server gets: offline models, no rate limit, `overrides` on top."""
    env = {
        **os.environ,
        "STEWARD_ENV": "development",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "STEWARD_BLOCKBUSTER": "1",
        "STEWARD_RATE_LIMIT_PER_MINUTE": "0",
        "STEWARD_DB_POOL_MAX": "8",  # servers of two workers share one Postgres
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DATABASE_URL", None)
    env.update(overrides)
    return env


def spawn_serve(env: dict[str, str], log_path: Path) -> Served:
    """Start `steward serve` on a free port; do not wait for it."""
    port = free_port()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            serve_command(port), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    return Served(f"http://127.0.0.1:{port}", proc, log_path)


def start_serve(env: dict[str, str], log_path: Path, *, ready_within: float = 120.0) -> Served:
    """Start `steward serve` on a free port and wait until `/readyz` answers 200."""
    served = spawn_serve(env, log_path)
    try:
        _wait_ready(served, ready_within)
    except BaseException:
        served.stop()
        raise
    return served


def _wait_ready(served: Served, within: float) -> None:
    deadline = time.monotonic() + within
    last = "no answer yet"
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            raise AssertionError(
                f"steward serve exited with {served.process.returncode} "
                f"before it was ready:\n{served.log()[-8000:]}"
            )
        try:
            r = httpx.get(f"{served.url}/readyz", timeout=5.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text}"
        except httpx.HTTPError as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise AssertionError(
        f"steward serve was not ready after {within:.0f}s (last /readyz: "
        f"{last}):\n{served.log()[-8000:]}"
    )


async def wait_exit(process: subprocess.Popen[bytes], within: float) -> int | None:
    """The process's exit code once it exits, or None if it still runs after `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        code = process.poll()
        if code is not None:
            return code
        await asyncio.sleep(0.05)
    return process.poll()


async def until(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    within: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Call `probe` until `done(result)`; fail with `what` after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = await probe()
        if done(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within:.0f}s (last: {result!r})")
        await asyncio.sleep(interval)
