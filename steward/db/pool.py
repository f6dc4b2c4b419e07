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

POOL_TIMEOUT_S = 10.0
"""How long a caller waits for a free connection before `PoolTimeout`."""


def create_pool(url: str, settings: Settings, *, timeout: float = POOL_TIMEOUT_S) -> DbPool:
    """Build (but do not open) the connection pool.

    Connections are autocommit (required by `AsyncPostgresSaver.setup()`); code that needs a
    transaction uses `async with conn.transaction()`. `settings.db_prepare_threshold=None`
    disables prepared statements for PgBouncer/Supavisor in transaction mode.

    Args:
        url: libpq connection string or URL.
        settings: source of `db_pool_min`, `db_pool_max` and `db_prepare_threshold`.
        timeout: seconds to wait for a free connection.
    """
    return AsyncConnectionPool(
        conninfo=url,
        connection_class=AsyncConnection[DictRow],
        kwargs={
            "autocommit": True,
            "prepare_threshold": settings.db_prepare_threshold,
            "row_factory": dict_row,
        },
        min_size=settings.db_pool_min,
        max_size=settings.db_pool_max,
        open=False,
        max_idle=300.0,
        max_lifetime=1800.0,
        check=AsyncConnectionPool.check_connection,
        timeout=timeout,
        name="steward",
    )


@asynccontextmanager
async def open_pool(url: str, settings: Settings) -> AsyncIterator[DbPool]:
    """Open the pool (waiting for `min_size` connections) and close it on exit."""
    pool = create_pool(url, settings)
    await pool.open(wait=True, timeout=30.0)
    logger.info(
        "database pool open: %s (min=%d, max=%d)",
        redact_url(url),
        settings.db_pool_min,
        settings.db_pool_max,
    )
    try:
        yield pool
    finally:
        await pool.close()
        logger.info("database pool closed")


__all__ = ["POOL_TIMEOUT_S", "DbPool", "create_pool", "open_pool"]
