"""The process-wide psycopg connection pool shared by the checkpointer and our own tables."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeAlias

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool
from psycopg_pool.base import AttemptWithBackoff

from core.db.embedded import redact_url
from core.db.outage import through_outages

if TYPE_CHECKING:
    from core.settings import Settings

logger = logging.getLogger(__name__)

Conn: TypeAlias = AsyncConnection[DictRow]
"""A pooled connection: autocommit, dict rows."""
DbPool: TypeAlias = AsyncConnectionPool[Conn]
"""The pool type `AsyncPostgresSaver` accepts: autocommit connections returning dict rows."""

POOL_TIMEOUT_S = 2.0
"""Default wait for a free connection before `PoolTimeout` (`STEWARD_DB_POOL_TIMEOUT_S`).

Short on purpose: while the database is unreachable a request answers 503 within about this
long instead of hanging. Runs do not fail on it: the executor retries recording their end
(or gives them back to the queue) with backoff while their lease lasts.
"""

KEEPALIVES: dict[str, int] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
    "connect_timeout": 10,
}
"""TCP settings of every pooled connection: a connection whose peer vanished without a reset
(a network partition, a frozen host) errors within about 30 s instead of blocking its query
(and the run holding it) for the kernel's default of hours. Ignored on Unix sockets."""


RECONNECT_MAX_DELAY_S = 2.0
"""Longest pause between the pool's attempts to reconnect to an unreachable database."""


CHECK_AFTER_IDLE_S = 10.0
"""A connection idle for longer than this is checked (one empty query) before it is handed out.

Checking every checkout cost one round trip per checkout, 39 per run (without it: Postgres CPU
-23 %, server CPU -9 %). A connection given back healthy moments ago is handed out as is;
one that sat idle (the database may have restarted meanwhile) is checked first. A connection
that broke in between fails its first statement, which the pool then discards and replaces:
code on the request path already answers 503 and runs retry while their lease lasts.
"""


class PooledConnection(AsyncConnection[DictRow]):
    """A pooled connection that knows when it was last given back to the pool."""

    returned_at: float = float("-inf")


async def _note_return(conn: Conn) -> None:
    """`reset` callback: the pool got the connection back in a working state."""
    if isinstance(conn, PooledConnection):
        conn.returned_at = time.monotonic()


async def _check_if_idle(conn: Conn) -> None:
    """`check` callback: check only a connection that was idle for `CHECK_AFTER_IDLE_S`."""
    recent = isinstance(conn, PooledConnection) and (
        time.monotonic() - conn.returned_at < CHECK_AFTER_IDLE_S
    )
    if recent:
        return
    await AsyncConnectionPool.check_connection(conn)


class _CappedBackoff(AttemptWithBackoff):
    """Reconnection backoff capped at `RECONNECT_MAX_DELAY_S`.

    psycopg_pool's own backoff doubles without a cap (1, 2, 4, 8, 16 s ...): after a 20 s
    outage the pool could wait 16 s more before trying again, and every request and run would
    keep failing meanwhile.
    """

    def update_delay(self, now: float) -> None:
        """Double the delay as psycopg_pool does, but never beyond the cap."""
        super().update_delay(now)
        self.delay = min(self.delay, RECONNECT_MAX_DELAY_S)


class _Pool(AsyncConnectionPool[AsyncConnection[DictRow]]):
    """The pool with a capped reconnection backoff (see `_CappedBackoff`)."""

    async def _add_connection(
        self, attempt: AttemptWithBackoff | None, growing: bool = False
    ) -> None:
        if attempt is None:
            attempt = _CappedBackoff(timeout=self.reconnect_timeout)
        await super()._add_connection(attempt, growing=growing)


def create_pool(url: str, settings: Settings, *, timeout: float | None = None) -> DbPool:
    """Build (but do not open) the connection pool.

    Connections are autocommit (required by `AsyncPostgresSaver.setup()`); code that needs a
    transaction uses `async with conn.transaction()`. `settings.db_prepare_threshold=None`
    disables prepared statements for PgBouncer/Supavisor in transaction mode.

    Args:
        url: libpq connection string or URL.
        settings: source of `db_pool_min`, `db_pool_max`, `db_pool_timeout_s` and
            `db_prepare_threshold`.
        timeout: seconds to wait for a free connection (default `settings.db_pool_timeout_s`).
    """
    return _Pool(
        conninfo=url,
        connection_class=PooledConnection,
        kwargs={
            "autocommit": True,
            "prepare_threshold": settings.db_prepare_threshold,
            "row_factory": dict_row,
            **KEEPALIVES,
        },
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        open=False,
        max_idle=300.0,
        max_lifetime=1800.0,
        check=_check_if_idle,
        reset=_note_return,
        timeout=timeout if timeout is not None else settings.db_pool_timeout_s,
        name="steward",
    )


async def _reach(url: str) -> None:
    """Connect once and close (the server is there and accepts these credentials)."""
    conn = await AsyncConnection.connect(url, connect_timeout=KEEPALIVES["connect_timeout"])
    await conn.close()


@asynccontextmanager
async def open_pool(url: str, settings: Settings) -> AsyncIterator[DbPool]:
    """Open the pool (waiting for `min_size` connections) and close it on exit.

    One connection is tried first: a server that refuses the role, password or database
    fails the start at once with its own message; an unreachable one is waited for
    (`STEWARD_DB_STARTUP_TIMEOUT_S`), and so is the pool's first `min_size` connections.
    """
    await through_outages(
        lambda: _reach(url),
        what="connecting to the database",
        timeout_s=settings.db_startup_timeout_s,
    )
    pool = create_pool(url, settings)
    await pool.open(wait=True, timeout=settings.db_startup_timeout_s)
    logger.info(
        "database pool open: %s (min=%d, max=%d, timeout=%.1fs)",
        redact_url(url),
        settings.db_pool_min,
        settings.db_pool_max,
        settings.db_pool_timeout_s,
    )
    try:
        yield pool
    finally:
        await pool.close()
        logger.info("database pool closed")


__all__ = ["POOL_TIMEOUT_S", "DbPool", "create_pool", "open_pool"]
