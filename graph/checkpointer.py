"""The Postgres checkpointer, on our own pool, pickle-free and with PII redacted on write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import ChannelVersions, Checkpoint, CheckpointMetadata
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncCursor, sql
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from core.guardrails.serde import RedactingSerializer

THREAD_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
"""LangGraph's tables keyed by `thread_id`: what a thread's copy must carry."""


class StewardSaver(AsyncPostgresSaver):
    """AsyncPostgresSaver without its instance lock, plus `acopy_thread` and `writes_settled`.

    The parent serialises every statement of the process through one `asyncio.Lock`
    (langgraph #7259), which only a saver on a single shared connection needs. On a pool each
    cursor has its own connection, so runs and API reads checkpoint concurrently, and one slow
    write (a lock wait, a slow disk) no longer stalls every other thread's reads.

    LangGraph writes checkpoints from tasks of its own (the loop's background executor) and,
    when a run is cancelled while it waits for them (at the loop's exit under `async` or
    `exit` durability, or a step's pending writes), those tasks go on after the run's task
    has stopped. `writes_settled(thread_id)` waits for them, so what a stopped run's thread
    holds is known before it is read or rolled back.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writing: dict[str, set[asyncio.Task[Any]]] = {}

    @asynccontextmanager
    async def _tracked(self, config: RunnableConfig) -> AsyncIterator[None]:
        task = asyncio.current_task()
        thread_id = str(config["configurable"]["thread_id"])
        if task is None:
            yield
            return
        writing = self._writing.setdefault(thread_id, set())
        writing.add(task)
        try:
            yield
        finally:
            writing.discard(task)
            if not writing:
                self._writing.pop(thread_id, None)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        """Save a checkpoint (tracked until it is written)."""
        async with self._tracked(config):
            return await super().aput(config, checkpoint, metadata, new_versions)

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Save a task's pending writes (tracked until they are written)."""
        async with self._tracked(config):
            await super().aput_writes(config, writes, task_id, task_path)

    async def writes_settled(self, thread_id: str) -> None:
        """Return once no checkpoint write of `thread_id` is in flight in this process.

        Writes made by the calling task itself are not waited for (it is not in one).
        """
        current = asyncio.current_task()
        while pending := {t for t in self._writing.get(thread_id, ()) if t is not current}:
            await asyncio.wait(pending)

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
