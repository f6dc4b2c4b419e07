"""A TCP proxy in front of Postgres that counts round trips: the client's Query, Sync and Flush.

The client's side of the wire protocol is parsed (so the proxy's URL turns TLS off): every
simple `Query`, every `Sync` of the extended protocol and every `Flush` (what psycopg sends in
a pipeline when it needs a result before the next sync) is one round trip, a point where the
client waits for the server. Statements sent in one pipeline up to one of them count once;
LISTEN notifications are server-only traffic and count nothing. The proxy runs its
own event loop in a daemon thread, so the measured process is slowed by a loopback hop only.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from urllib.parse import urlsplit, urlunsplit

CHUNK = 65536


class RoundTripProxy:
    """Forward `127.0.0.1:<port>` to the Postgres of `target_url`; count client turns."""

    def __init__(self, target_url: str) -> None:
        parts = urlsplit(target_url)
        self._target_url = parts
        self._host = parts.hostname or "127.0.0.1"
        self._target_port = parts.port or 5432
        self.port = 0
        self.turns = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def start(self) -> str:
        """Start forwarding; returns the URL that goes through the proxy."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        netloc = self._target_url.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{self.port}"
        url = self._target_url._replace(
            netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host,
            query="&".join(q for q in (self._target_url.query, "sslmode=disable") if q),
        )
        return urlunsplit(url)

    def reset(self) -> None:
        """Count from zero again."""
        self.turns = 0

    def close(self) -> None:
        """Stop listening and stop the proxy's thread (open connections are dropped)."""
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._target_port)
        except OSError:
            writer.transport.abort()
            return
        messages = _Messages()

        async def client_to_server() -> None:
            while data := await reader.read(CHUNK):
                self.turns += messages.feed(data)
                up_writer.write(data)
                await up_writer.drain()

        async def server_to_client() -> None:
            while data := await up_reader.read(CHUNK):
                writer.write(data)
                await writer.drain()

        pumps = [asyncio.create_task(client_to_server()), asyncio.create_task(server_to_client())]
        with contextlib.suppress(OSError, asyncio.IncompleteReadError):
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        for w in (writer, up_writer):
            w.transport.abort()


class _Messages:
    """The client's message stream: counts the `Q`, `S` and `H` messages in what it is fed."""

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False  # the startup message (and an SSLRequest before it) has no type

    def feed(self, data: bytes) -> int:
        self._buffer += data
        count = 0
        while True:
            if not self._started:
                if len(self._buffer) < 8:
                    return count
                length = int.from_bytes(self._buffer[:4], "big")
                code = int.from_bytes(self._buffer[4:8], "big")
                if len(self._buffer) < length:
                    return count
                self._buffer = self._buffer[length:]
                self._started = code not in (80877103, 80877104)  # SSL/GSS request: then startup
                continue
            if len(self._buffer) < 5:
                return count
            length = int.from_bytes(self._buffer[1:5], "big")
            if len(self._buffer) < 1 + length:
                return count
            count += self._buffer[:1] in (b"Q", b"S", b"H")
            self._buffer = self._buffer[1 + length :]
