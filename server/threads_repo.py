"""The `threads` table: ownership, metadata and status of every conversation.

This module owns every statement on `threads` and the status rules: the runs engine uses the
connection-level functions (unscoped, inside its own transactions, after it checked the
principal), the threads routes use `ThreadsRepo`. A thread's status is `busy` while a run on it
is pending or running, whoever settles it (`settle_thread_status`).

Every scoped read is scoped by the principal: another tenant's thread (or, for role `user`, another
owner's thread) is indistinguishable from a missing one. Checkpoints live in LangGraph's own
tables, keyed by the same `thread_id` (as text).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast, get_args
from uuid import UUID, uuid4

from psycopg import errors, sql
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from core.errors import Conflict, NotFound
from core.identity import Principal

if TYPE_CHECKING:
    from langgraph.checkpoint.base import BaseCheckpointSaver

    from core.db.pool import Conn, DbPool

logger = logging.getLogger(__name__)

ThreadStatus = Literal["idle", "busy", "interrupted", "error"]
THREAD_STATUSES: tuple[ThreadStatus, ...] = ("idle", "busy", "interrupted", "error")
SortBy = Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"]
"""`state_updated_at` sorts by the row's `updated_at`, which every run's end and every state
update set (so does a metadata patch): the thread's state time is not a column."""
SortOrder = Literal["asc", "desc"]
IfExists = Literal["raise", "do_nothing"]

_COLUMNS = "thread_id, tenant_id, owner_id, metadata, status, created_at, updated_at"


class ThreadRow(TypedDict):
    """One row of `threads`."""

    thread_id: UUID
    tenant_id: str
    owner_id: str
    metadata: dict[str, Any]
    status: ThreadStatus
    created_at: datetime
    updated_at: datetime


def _scope(principal: Principal) -> tuple[sql.Composable, list[Any]]:
    """The WHERE fragment restricting rows to what `principal` may see."""
    if principal.role == "user":
        return sql.SQL("tenant_id = %s AND owner_id = %s"), [principal.tenant_id, principal.user_id]
    return sql.SQL("tenant_id = %s"), [principal.tenant_id]


def _filters(
    principal: Principal,
    metadata: dict[str, Any] | None,
    ids: list[UUID] | None,
    status: ThreadStatus | None,
) -> tuple[sql.Composable, list[Any]]:
    clause, params = _scope(principal)
    parts: list[sql.Composable] = [clause]
    if metadata:
        parts.append(sql.SQL("metadata @> %s"))
        params.append(Jsonb(metadata))
    if ids is not None:
        parts.append(sql.SQL("thread_id = ANY(%s)"))
        params.append(list(ids))
    if status is not None:
        parts.append(sql.SQL("status = %s"))
        params.append(status)
    return sql.SQL(" AND ").join(parts), params


# --------------------------------------------------------------------------- engine side


async def get_thread(conn: Conn, thread_id: UUID, *, lock: bool = False) -> DictRow | None:
    """Return the thread row (`FOR UPDATE` when `lock`), or None."""
    query = (
        "SELECT thread_id, tenant_id, owner_id, status, metadata FROM threads"  # noqa: S608
        " WHERE thread_id = %s" + (" FOR UPDATE" if lock else "")
    )
    cur = await conn.execute(query, (thread_id,))
    return await cur.fetchone()


async def insert_thread(
    conn: Conn, thread_id: UUID, *, tenant_id: str, owner_id: str, metadata: str = "{}"
) -> bool:
    """Create a thread if the id is free; return False when it already exists."""
    cur = await conn.execute(
        "INSERT INTO threads (thread_id, tenant_id, owner_id, metadata, status)"
        " VALUES (%s, %s, %s, %s::jsonb, 'idle') ON CONFLICT (thread_id) DO NOTHING",
        (thread_id, tenant_id, owner_id, metadata),
    )
    return cur.rowcount == 1


async def lock_thread(conn: Conn, thread_id: UUID) -> None:
    """Lock a thread's row: the first lock of every transaction that writes thread and runs.

    The lock order is thread row, then run rows, then approval rows (docs/http-service.md,
    "Lock order"); taking them in one order everywhere keeps concurrent creates and finishes
    of one thread from deadlocking.
    """
    await conn.execute("SELECT 1 FROM threads WHERE thread_id = %s FOR UPDATE", (thread_id,))


async def mark_thread_busy(conn: Conn, thread_id: UUID, metadata_patch: str) -> None:
    """Set the thread `busy` and merge `metadata_patch` (JSON) into its metadata."""
    await conn.execute(
        "UPDATE threads SET status = 'busy', metadata = metadata || %s::jsonb,"
        " updated_at = now() WHERE thread_id = %s",
        (metadata_patch, thread_id),
    )


async def settle_thread_status(conn: Conn, thread_id: UUID, status: str) -> DictRow | None:
    """Set the thread's status after a run, or `busy` while another run is still active.

    Returns the updated row (the columns of `get_thread`), None when the thread is gone.
    """
    cur = await conn.execute(
        "UPDATE threads SET updated_at = now(), status = CASE WHEN EXISTS ("
        "  SELECT 1 FROM runs WHERE thread_id = %(t)s AND status IN ('pending', 'running'))"
        " THEN 'busy' ELSE %(s)s END WHERE thread_id = %(t)s"
        " RETURNING thread_id, tenant_id, owner_id, status, metadata",
        {"t": thread_id, "s": status},
    )
    return await cur.fetchone()


async def delete_thread_row(conn: Conn, thread_id: UUID) -> None:
    """Delete a thread row (its runs and events cascade)."""
    await conn.execute("DELETE FROM threads WHERE thread_id = %s", (thread_id,))


# --------------------------------------------------------------------------- API side


class ThreadsRepo:
    """Create, read, update, delete and search threads on behalf of a principal."""

    def __init__(self, pool: DbPool, checkpointer: BaseCheckpointSaver[Any] | None = None) -> None:
        self._pool = pool
        self._checkpointer = checkpointer

    async def create(
        self,
        principal: Principal,
        thread_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        if_exists: IfExists = "raise",
    ) -> tuple[ThreadRow, bool]:
        """Create a thread owned by the principal; return it and whether this call created it.

        With `if_exists="do_nothing"` an existing thread visible to the principal is returned
        unchanged.

        Raises:
            Conflict: the id is taken (and, for `do_nothing`, not visible to the principal).
        """
        thread_id = thread_id or uuid4()
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"INSERT INTO threads (thread_id, tenant_id, owner_id, metadata)"  # noqa: S608
                f" VALUES (%s, %s, %s, %s) ON CONFLICT (thread_id) DO NOTHING"
                f" RETURNING {_COLUMNS}",
                (thread_id, principal.tenant_id, principal.user_id, Jsonb(metadata or {})),
            )
            row = await cur.fetchone()
        if row is not None:
            return cast(ThreadRow, row), True
        if if_exists == "do_nothing":
            existing = await self.get_visible(principal, thread_id)
            if existing is not None:
                return existing, False
        raise Conflict(f"thread {thread_id} already exists")

    async def get_visible(
        self, principal: Principal, thread_id: UUID, *, conn: Conn | None = None
    ) -> ThreadRow | None:
        """Return the thread if it exists and the principal may see it, else None."""
        scope, params = _scope(principal)
        query = sql.SQL("SELECT {cols} FROM threads WHERE thread_id = %s AND {scope}").format(
            cols=sql.SQL(_COLUMNS), scope=scope
        )
        if conn is not None:
            cur = await conn.execute(query, [thread_id, *params])
            return cast(ThreadRow | None, await cur.fetchone())
        async with self._pool.connection() as own:
            cur = await own.execute(query, [thread_id, *params])
            return cast(ThreadRow | None, await cur.fetchone())

    async def require_visible(
        self, principal: Principal, thread_id: UUID, *, conn: Conn | None = None
    ) -> ThreadRow:
        """Return the visible thread.

        Raises:
            NotFound: missing, or not visible to the principal (the same answer on purpose).
        """
        row = await self.get_visible(principal, thread_id, conn=conn)
        if row is None:
            raise NotFound(f"thread {thread_id} not found")
        return row

    async def patch_metadata(
        self, principal: Principal, thread_id: UUID, metadata: dict[str, Any]
    ) -> ThreadRow:
        """Merge `metadata` into the thread's metadata (top-level keys replaced).

        Raises:
            NotFound: missing or not visible.
        """
        scope, params = _scope(principal)
        query = sql.SQL(
            "UPDATE threads SET metadata = metadata || %s, updated_at = now()"
            " WHERE thread_id = %s AND {scope} RETURNING {cols}"
        ).format(scope=scope, cols=sql.SQL(_COLUMNS))
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, [Jsonb(metadata), thread_id, *params])
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"thread {thread_id} not found")
        return cast(ThreadRow, row)

    async def set_status(
        self, thread_id: UUID, status: ThreadStatus, *, conn: Conn | None = None
    ) -> None:
        """Settle the thread's status after a state write (`busy` while a run is active).

        Unscoped: the caller already checked the principal.
        """
        if conn is not None:
            await settle_thread_status(conn, thread_id, status)
            return
        async with self._pool.connection() as own:
            await settle_thread_status(own, thread_id, status)

    async def touch(self, thread_id: UUID, *, conn: Conn | None = None) -> None:
        """Bump `updated_at` (after a state update)."""
        query = "UPDATE threads SET updated_at = now() WHERE thread_id = %s"
        if conn is not None:
            await conn.execute(query, (thread_id,))
            return
        async with self._pool.connection() as own:
            await own.execute(query, (thread_id,))

    async def delete(self, principal: Principal, thread_id: UUID) -> None:
        """Delete the thread, its runs (by cascade) and its checkpoints.

        Raises:
            NotFound: missing or not visible.
            Conflict: a run is active on the thread (cancel it first).
        """
        scope, params = _scope(principal)
        query = sql.SQL(
            "DELETE FROM threads WHERE thread_id = %s AND {scope} AND NOT EXISTS ("
            " SELECT 1 FROM runs WHERE runs.thread_id = threads.thread_id"
            " AND runs.status IN ('pending', 'running'))"
        ).format(scope=scope)
        async with self._pool.connection() as conn, conn.transaction():
            await lock_thread(conn, thread_id)  # lock order: thread row first
            cur = await conn.execute(query, [thread_id, *params])
            deleted = cur.rowcount > 0
        if not deleted:
            await self.require_visible(principal, thread_id)
            raise Conflict(f"thread {thread_id} is busy: cancel its runs before deleting it")
        if self._checkpointer is not None:
            await self._checkpointer.adelete_thread(str(thread_id))

    async def copy(self, principal: Principal, thread_id: UUID) -> ThreadRow:
        """Copy a thread (metadata, status, every checkpoint) to a new id the caller owns.

        Runs, approvals and refunds are not copied: they are records of what happened on the
        source. The row is written first and removed again if the checkpoints fail to copy.

        Raises:
            NotFound: missing or not visible.
            Conflict: the thread is not idle. Busy: its state is moving. Interrupted: its
                pending action belongs to the source's approval. Failed: its last step can be
                retried (`input: null`), and a copy would retry it a second time elsewhere.
        """
        source = await self.require_visible(principal, thread_id)
        if source["status"] != "idle":
            raise Conflict(
                f"thread {thread_id} is {source['status']}: only an idle thread can be copied"
                " (a waiting approval or a failed step to retry belongs to its own thread)"
            )
        target = uuid4()
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                f"INSERT INTO threads (thread_id, tenant_id, owner_id, metadata, status)"  # noqa: S608
                f" VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
                (
                    target,
                    principal.tenant_id,
                    principal.user_id,
                    Jsonb(source["metadata"]),
                    source["status"],
                ),
            )
            row = cast(ThreadRow, await cur.fetchone())
        if self._checkpointer is None:
            return row
        try:
            await self._checkpointer.acopy_thread(str(thread_id), str(target))
        except BaseException:
            async with self._pool.connection() as conn:
                await delete_thread_row(conn, target)
            raise
        return row

    async def prune_history(self, principal: Principal, thread_ids: list[UUID]) -> int:
        """Keep only the latest checkpoint of each visible, not busy thread; return how many.

        Threads the caller may not see are skipped like missing ones (not counted); a busy
        thread is skipped too, its state is still moving.
        """
        scope, params = _scope(principal)
        query = sql.SQL(
            "SELECT thread_id FROM threads WHERE thread_id = ANY(%s) AND {scope}"
            " AND status <> 'busy'"
        ).format(scope=scope)
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, [list(thread_ids), *params])
            ids = [str(r["thread_id"]) for r in await cur.fetchall()]
        if ids and self._checkpointer is not None:
            try:
                await self._checkpointer.aprune(ids, strategy="keep_latest")
            except (errors.SerializationFailure, errors.DeadlockDetected):
                raise Conflict("another prune or run changed these threads; try again") from None
        return len(ids)

    async def search(
        self,
        principal: Principal,
        *,
        metadata: dict[str, Any] | None = None,
        ids: list[UUID] | None = None,
        status: ThreadStatus | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: SortBy = "created_at",
        sort_order: SortOrder = "desc",
    ) -> list[ThreadRow]:
        """List visible threads matching every filter (metadata by jsonb containment)."""
        if sort_by not in get_args(SortBy):
            raise ValueError(f"cannot sort by {sort_by!r}")
        column = "updated_at" if sort_by == "state_updated_at" else sort_by
        where, params = _filters(principal, metadata, ids, status)
        direction = sql.SQL("ASC" if sort_order == "asc" else "DESC")
        query = sql.SQL(
            "SELECT {cols} FROM threads WHERE {where}"
            " ORDER BY {sort} {dir}, thread_id {dir} LIMIT %s OFFSET %s"
        ).format(cols=sql.SQL(_COLUMNS), where=where, sort=sql.Identifier(column), dir=direction)
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, [*params, limit, offset])
            rows = await cur.fetchall()
        return [cast(ThreadRow, r) for r in rows]

    async def count(
        self,
        principal: Principal,
        *,
        metadata: dict[str, Any] | None = None,
        ids: list[UUID] | None = None,
        status: ThreadStatus | None = None,
    ) -> int:
        """Count visible threads matching every filter."""
        where, params = _filters(principal, metadata, ids, status)
        query = sql.SQL("SELECT count(*) AS n FROM threads WHERE {where}").format(where=where)
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, params)
            row = await cur.fetchone()
        return int(row["n"]) if row else 0


__all__ = [
    "THREAD_STATUSES",
    "Conn",
    "IfExists",
    "SortBy",
    "SortOrder",
    "ThreadRow",
    "ThreadStatus",
    "ThreadsRepo",
    "delete_thread_row",
    "get_thread",
    "insert_thread",
    "lock_thread",
    "mark_thread_busy",
    "settle_thread_status",
]
