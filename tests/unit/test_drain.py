"""The drain state machine of `DrainingServer` (the real process: tests/e2e/test_drain.py)."""

from __future__ import annotations

import signal
from typing import Any

import uvicorn

from server.drain import Drain, DrainingServer


async def _app(scope: Any, receive: Any, send: Any) -> None:  # pragma: no cover - never served
    raise AssertionError("not served")


def make_server(delay_s: float = 60.0) -> DrainingServer:
    return DrainingServer(uvicorn.Config(_app), drain=Drain(), delay_s=delay_s)


def test_the_first_signal_drains_and_a_second_one_skips_the_delay() -> None:
    server = make_server()
    calls: list[str] = []
    server.drain.on_begin(lambda: calls.append("stop claiming"))

    server.handle_exit(signal.SIGTERM, None)
    assert server.drain.draining and not server.should_exit
    server.drain.notify()
    server.drain.notify()
    assert calls == ["stop claiming"], "callbacks run once"

    server.handle_exit(signal.SIGTERM, None)
    assert server.should_exit and not server.force_exit
    server.handle_exit(signal.SIGINT, None)
    assert server.force_exit, "uvicorn's rule: another Ctrl+C forces the exit"


async def test_on_tick_exits_only_once_the_delay_is_over() -> None:
    server = make_server(delay_s=60.0)
    assert await server.on_tick(1) is False
    server.handle_exit(signal.SIGINT, None)
    assert await server.on_tick(2) is False, "still serving during the delay"
    assert server.drain.notified
    server.delay_s = 0.0
    assert await server.on_tick(3) is True


def test_a_callback_registered_after_the_drain_began_runs_at_once() -> None:
    drain = Drain()
    drain.begin()
    drain.notify()
    calls: list[int] = []
    drain.on_begin(lambda: calls.append(1))
    assert calls == [1]
