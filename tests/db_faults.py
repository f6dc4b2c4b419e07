"""Faults injected in the real database: a write that waits until the test lets it through.

A test holds an advisory lock; a trigger makes the chosen writes wait for it, as a slow disk or
a lock held by another transaction would. Nothing in the product is patched.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
from psycopg import sql

CHECKPOINT_TABLES = ("checkpoints", "checkpoint_blobs", "checkpoint_writes")


class HeldWrites:
    """Writes waiting on the test's advisory lock (released when the context exits)."""

    def __init__(self, conn: psycopg.AsyncConnection[tuple[Any, ...]], key: int) -> None:
        self.conn = conn
        self.key = key

    async def blocked(self) -> int:
        """How many sessions wait on the lock now."""
        cur = await self.conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            " AND ((classid::bigint << 32) | objid::bigint) = %s",
            (self.key,),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0

    async def until_blocked(self) -> None:
        """Return once a held write waits (fail after a minute)."""
        for _ in range(3000):
            if await self.blocked():
                return
            await asyncio.sleep(0.02)
        raise AssertionError("no write waited on the held lock within a minute")

    async def while_blocked(self, seconds: float) -> None:
        """Keep the writes held for `seconds` (the writer may give up meanwhile)."""
        await asyncio.sleep(seconds)


@asynccontextmanager
async def held_checkpoints(
    database_url: str, thread_id: str, *, once: str = "true"
) -> AsyncIterator[HeldWrites]:
    """Hold every checkpoint write of `thread_id` made while the SQL condition `once` holds
    (`NEW` is the row written)."""
    key = random.randint(1, 2**31 - 1)
    name = sql.Identifier(f"steward_test_hold_{uuid.uuid4().hex[:12]}")
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    await conn.execute("SELECT pg_advisory_lock(%s)", (key,))
    body = sql.SQL(
        "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF {once} THEN PERFORM pg_advisory_xact_lock_shared({key}); END IF; "
        "RETURN NEW; END $$"
    ).format(name=name, once=sql.SQL(once), key=sql.Literal(key))
    await conn.execute(body)
    for table in CHECKPOINT_TABLES:
        await conn.execute(
            sql.SQL(
                "CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON {table} FOR EACH ROW "
                "WHEN (NEW.thread_id = {tid}) EXECUTE FUNCTION {name}()"
            ).format(name=name, table=sql.Identifier(table), tid=sql.Literal(thread_id))
        )
    try:
        yield HeldWrites(conn, key)
    finally:
        await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        for table in CHECKPOINT_TABLES:
            await conn.execute(
                sql.SQL("DROP TRIGGER {name} ON {table}").format(
                    name=name, table=sql.Identifier(table)
                )
            )
        await conn.execute(sql.SQL("DROP FUNCTION {name}()").format(name=name))
        await conn.close()


async def until_checkpoint_writes_end(database_url: str) -> None:
    """Return once no session of the database is inside a checkpoint write (a minute at most).

    After held writes are let through, what they write lands some time later; a test that
    reads the thread right away could miss a write that lands after the run was finished.
    """
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for _ in range(3000):
            cur = await conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND query ILIKE '%%checkpoint%%'"
                " AND (state = 'active' OR state LIKE 'idle in transaction%%')"
            )
            row = await cur.fetchone()
            if row is not None and row[0] == 0:
                return
            await asyncio.sleep(0.02)
    raise AssertionError("checkpoint writes still running after a minute")


def held_checkpoints_after_refund(
    database_url: str, thread_id: str
) -> AbstractAsyncContextManager[HeldWrites]:
    """Hold every checkpoint write of `thread_id` made once the thread has a refund."""
    return held_checkpoints(
        database_url,
        thread_id,
        once="EXISTS (SELECT 1 FROM refunds WHERE thread_id = NEW.thread_id)",
    )


class RefundWitness:
    """What the database held when each refund was inserted."""

    def __init__(
        self, conn: psycopg.AsyncConnection[tuple[Any, ...]], table: sql.Identifier
    ) -> None:
        self.conn = conn
        self.table = table

    async def checkpoints_at(self, refund_id: str) -> int:
        """How many checkpoints the refund's thread had when the refund was inserted."""
        cur = await self.conn.execute(
            sql.SQL("SELECT checkpoints FROM {table} WHERE refund_id = %s").format(
                table=self.table
            ),
            (refund_id,),
        )
        row = await cur.fetchone()
        assert row is not None, f"refund {refund_id} was not witnessed"
        return int(row[0])


@asynccontextmanager
async def refund_witness(database_url: str) -> AsyncIterator[RefundWitness]:
    """Record, inside each refund's own insert, how many checkpoints its thread had then."""
    suffix = uuid.uuid4().hex[:12]
    table = sql.Identifier(f"steward_test_witness_{suffix}")
    name = sql.Identifier(f"steward_test_witness_fn_{suffix}")
    conn = await psycopg.AsyncConnection.connect(database_url, autocommit=True)
    await conn.execute(
        sql.SQL("CREATE TABLE {table} (refund_id uuid PRIMARY KEY, checkpoints int)").format(
            table=table
        )
    )
    await conn.execute(
        sql.SQL(
            "CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "INSERT INTO {table} SELECT NEW.refund_id, count(*) FROM checkpoints "
            "WHERE thread_id = NEW.thread_id; RETURN NEW; END $$"
        ).format(name=name, table=table)
    )
    await conn.execute(
        sql.SQL(
            "CREATE TRIGGER {name} AFTER INSERT ON refunds FOR EACH ROW EXECUTE FUNCTION {name}()"
        ).format(name=name)
    )
    try:
        yield RefundWitness(conn, table)
    finally:
        await conn.execute(sql.SQL("DROP TRIGGER {name} ON refunds").format(name=name))
        await conn.execute(sql.SQL("DROP FUNCTION {name}()").format(name=name))
        await conn.execute(sql.SQL("DROP TABLE {table}").format(table=table))
        await conn.close()
