"""The Postgres checkpointer, on our own pool, pickle-free and with PII redacted on write."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncCursor, sql
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from core.guardrails.serde import RedactingSerializer

THREAD_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
"""LangGraph's tables keyed by `thread_id`: what a thread's copy must carry."""


class StewardSaver(AsyncPostgresSaver):
    """AsyncPostgresSaver without its instance lock, plus `acopy_thread`.

    The parent serialises every statement of the process through one `asyncio.Lock`
    (langgraph #7259), which only a saver on a single shared connection needs. On a pool each
    cursor has its own connection, so runs and API reads checkpoint concurrently, and one slow
    write (a lock wait, a slow disk) no longer stalls every other thread's reads.
    """

    @asynccontextmanager
    async def _cursor(self, *, pipeline: bool = False) -> AsyncIterator[AsyncCursor[DictRow]]:
        if not isinstance(self.conn, AsyncConnectionPool):
            async with super()._cursor(pipeline=pipeline) as cur:
                yield cur
            return
        async with self.conn.connection() as conn:
            if pipeline and self.supports_pipeline:
                async with conn.pipeline(), conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur
            elif pipeline:
                async with (
                    conn.transaction(),
                    conn.cursor(binary=True, row_factory=dict_row) as cur,
                ):
                    yield cur
            else:
                async with conn.cursor(binary=True, row_factory=dict_row) as cur:
                    yield cur

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, blob and pending write of a thread to another, atomically.

        The whole chain is copied, so delta channels rebuild on the target as on the source.
        Columns are read from the catalogue: the copy follows the saver's own migrations.
        """
        pool: AsyncConnectionPool[Any] = self.conn  # type: ignore[assignment]
        async with pool.connection() as conn, conn.transaction():
            for table in THREAD_TABLES:
                cur = await conn.execute(
                    "SELECT column_name FROM information_schema.columns"
                    " WHERE table_schema = current_schema() AND table_name = %s"
                    " AND column_name <> 'thread_id' ORDER BY ordinal_position",
                    (table,),
                )
                columns = [sql.Identifier(row["column_name"]) for row in await cur.fetchall()]
                query = sql.SQL(
                    "INSERT INTO {table} (thread_id, {cols}) SELECT %s, {cols} FROM {table}"
                    " WHERE thread_id = %s"
                ).format(table=sql.Identifier(table), cols=sql.SQL(", ").join(columns))
                await conn.execute(query, (target_thread_id, source_thread_id))


def make_checkpointer(pool: AsyncConnectionPool[Any]) -> StewardSaver:
    """Return the saver on `pool` (autocommit, dict rows; see core.db.pool).

    The serializer is strict msgpack (LangGraph's safe types only, never pickle) and redacts
    user text before it is stored: LangGraph persists a run's input before input_filter runs.
    """
    return StewardSaver(pool, serde=RedactingSerializer())
