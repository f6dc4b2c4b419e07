"""The process-wide psycopg connection pool shared by the checkpointer and our own tables."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeAlias

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from steward.db.embedded import redact_url

if TYPE_CHECKING:
    from steward.settings import Settings

logger = logging.getLogger(__name__)

DbPool: TypeAlias = AsyncConnectionPool[AsyncConnection[DictRow]]
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
    return AsyncConnectionPool(
        conninfo=url,
        connection_class=AsyncConnection[DictRow],
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
        check=AsyncConnectionPool.check_connection,
        timeout=timeout if timeout is not None else settings.db_pool_timeout_s,
        name="steward",
    )


@asynccontextmanager
async def open_pool(url: str, settings: Settings) -> AsyncIterator[DbPool]:
    """Open the pool (waiting for `min_size` connections) and close it on exit."""
    pool = create_pool(url, settings)
    await pool.open(wait=True, timeout=30.0)
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
