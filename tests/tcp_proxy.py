"""A TCP proxy a test can cut: drop every connection and refuse new ones, then restore.

It runs its own event loop in a daemon thread, so it keeps forwarding while the test's loop
is blocked (a synchronous readiness wait, say). `cut()` closes the listening socket (new
connections are refused at once, as by a stopped server) and aborts every open connection
(both ends see the connection reset); `restore()` listens on the same port again.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

CHUNK = 65536


class TcpProxy:
    """Forward `127.0.0.1:<port>` to `target_host:target_port` until cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.port = 0
        self.accepted = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="tcp-proxy", daemon=True
        )
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- control (called from any thread)

    def start(self) -> int:
        """Start forwarding on a free loopback port; returns the port."""
        self._thread.start()
        self._run(self._listen())
        return self.port

    def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        self._run(self._cut())

    def restore(self) -> None:
        """Accept and forward connections again (same port)."""
        self._run(self._listen())

    def close(self) -> None:
        """Cut and stop the proxy's thread."""
        with contextlib.suppress(RuntimeError):
            self._run(self._cut())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    @property
    def open_connections(self) -> int:
        """Client connections currently forwarded."""
        return len(self._writers) // 2

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    # -- inside the proxy's loop

    async def _listen(self) -> None:
        if self._server is not None:
            return
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        if server is not None:
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host, self.target_port)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        pumps = [
            asyncio.create_task(self._pump(reader, up_writer)),
            asyncio.create_task(self._pump(up_reader, writer)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
                self._tasks.discard(task)
            for w in (writer, up_writer):
                self._writers.discard(w)
                w.transport.abort()

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            while data := await reader.read(CHUNK):
                writer.write(data)
                await writer.drain()


__all__ = ["TcpProxy"]
