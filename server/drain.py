"""Graceful drain: what a replica does between SIGTERM (or SIGINT) and its exit.

`steward serve` runs uvicorn through `DrainingServer`, which turns the first signal into a
drain instead of uvicorn's immediate close of the listener:

1. At once (in the signal handler): `Drain.draining` becomes true, so `/readyz` answers 503
   `{"status": "draining"}` and every response carries `Connection: close` (clients and load
   balancers reconnect elsewhere). The drain's callbacks are handed to the event loop
   (`call_soon_threadsafe`) and run before the next request is read: the run worker stops
   claiming runs.
2. For `STEWARD_SHUTDOWN_DELAY_S` the listener keeps serving: in-flight requests finish and the
   load balancer's health checks see the 503. Running runs keep executing and renewing leases.
3. Then uvicorn's own shutdown: the listener closes, open connections get
   `HTTP_SHUTDOWN_TIMEOUT_S`, and the app's lifespan ends: `RunWorker.stop()` lets running
   graphs reach a step boundary within `STEWARD_RUN_SHUTDOWN_GRACE_S`, cancels what is left,
   and gives those runs back to the queue (`pending`, next attempt) for another replica.

A second signal skips what is left of the delay; after that uvicorn's rule applies (another
SIGINT forces the exit). The process exits 0 after a signal-initiated stop: the signal is not
re-raised, so `steward serve`'s own clean-up (the embedded Postgres) and `atexit` hooks run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator
from types import FrameType
from typing import Any, cast

import uvicorn
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger(__name__)

HTTP_SHUTDOWN_TIMEOUT_S = 10
"""After the listener closed, how long open connections (e.g. streams) may still run."""
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Drain:
    """A process's drain state: begun once, never undone.

    `begin()` only records the time, so it is safe in a signal handler; `notify()` runs the
    callbacks registered with `on_begin` and belongs in the event loop.
    """

    def __init__(self) -> None:
        self.started_at: float | None = None
        self._callbacks: list[Callable[[], None]] = []
        self._notified = False

    @property
    def draining(self) -> bool:
        """True once the drain has begun."""
        return self.started_at is not None

    @property
    def notified(self) -> bool:
        """True once the callbacks ran."""
        return self._notified

    def elapsed(self) -> float:
        """Seconds since the drain began (0 before)."""
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at

    def begin(self) -> bool:
        """Start draining; True the first time."""
        if self.started_at is not None:
            return False
        self.started_at = time.monotonic()
        return True

    def on_begin(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the drain is notified (at once if it already was)."""
        self._callbacks.append(callback)
        if self._notified:
            callback()

    def notify(self) -> None:
        """Run the callbacks once (from the event loop, after `begin()`)."""
        if self._notified or not self.draining:
            return
        self._notified = True
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                log.exception("drain callback %r failed", callback)


class DrainMiddleware:
    """While draining, add `Connection: close` to every HTTP response (no new keep-alive)."""

    def __init__(self, app: ASGIApp, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; mark the response `Connection: close` while draining."""
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return

        async def send_closing(message: Message) -> None:
            if message["type"] == "http.response.start" and self.drain.draining:
                headers = list(message.get("headers") or [])
                if not any(bytes(name).lower() == b"connection" for name, _ in headers):
                    headers.append((b"connection", b"close"))
                message = cast(Message, {**message, "headers": headers})
            await send(message)

        await self.app(scope, receive, send_closing)


class DrainingServer(uvicorn.Server):
    """`uvicorn.Server` whose first SIGTERM/SIGINT drains for `delay_s` before shutting down.

    Uses uvicorn's own hooks: `handle_exit` (the signal handler) and `on_tick` (called by the
    main loop every 0.1 s, where uvicorn reads `should_exit` anyway).
    """

    def __init__(self, config: uvicorn.Config, *, drain: Drain, delay_s: float) -> None:
        super().__init__(config)
        self.drain = drain
        self.delay_s = max(0.0, delay_s)
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        """Remember the loop (the signal handler hands the drain to it), then serve."""
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then say where the service listens (our own line)."""
        await super().startup(sockets)
        if self.started:
            host = self.config.host
            shown = f"[{host}]" if ":" in host else host
            log.info(
                "listening on http://%s:%d (API docs at /docs; Ctrl+C stops)",
                shown,
                self.config.port,
            )

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """First signal: begin the drain. Later ones: uvicorn's behaviour (exit now)."""
        if self.drain.begin():
            if self._loop is not None:  # run the callbacks in the loop, right away
                self._loop.call_soon_threadsafe(self._notify, sig)
            return
        super().handle_exit(sig, frame)

    def _notify(self, sig: int | None = None) -> None:
        if self.drain.notified:
            return
        name = signal.Signals(sig).name if sig is not None else "a signal"
        log.warning(
            "%s: draining; /readyz answers 503 and no new runs are claimed, the listener "
            "closes in %.1fs",
            name,
            self.delay_s,
        )
        self.drain.notify()

    async def on_tick(self, counter: int) -> bool:
        """Notify the drain (if the handler could not), and exit once its delay is over."""
        if self.drain.draining:
            self._notify()
            if not self.should_exit and self.drain.elapsed() >= self.delay_s:
                log.warning("drain delay over after %.1fs: shutting down", self.drain.elapsed())
                self.should_exit = True
        return await super().on_tick(counter)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Install our handler for SIGINT/SIGTERM and restore the old ones afterwards.

        Unlike uvicorn's version it does not re-raise the signal after the shutdown: the
        process then ends normally (exit code 0), with its `finally` blocks and `atexit` hooks.
        """
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original: dict[int, Any] = {sig: signal.signal(sig, self.handle_exit) for sig in SIGNALS}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


__all__ = ["HTTP_SHUTDOWN_TIMEOUT_S", "Drain", "DrainMiddleware", "DrainingServer"]
