"""SQL for `runs` rows as the API creates, reads and cancels them.

Every function takes an open connection (autocommit, dict rows; see `core.db.pool`), so
callers compose them inside one `conn.transaction()` where atomicity matters.
"""

from __future__ import annotations

import uuid

from psycopg.rows import DictRow

from core.db.pool import Conn
from server.runs.repo.channels import CANCEL_CHANNEL, notify

RUN_COLUMNS = (
    "run_id, thread_id, tenant_id, owner_id, assistant_id, status, kwargs, metadata,"
    " multitask_strategy, worker_id, lease_expires_at, attempt, cancel_action, error,"
    " created_at, updated_at, events_mode"
)
_R_COLUMNS = ", ".join("r." + c.strip() for c in RUN_COLUMNS.split(","))


async def active_runs(conn: Conn, thread_id: uuid.UUID) -> list[DictRow]:
    """Pending and running runs of a thread, oldest first, locked for update."""
    cur = await conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE thread_id = %s"  # noqa: S608 - constant
        " AND status IN ('pending', 'running') ORDER BY created_at, run_id FOR UPDATE",
        (thread_id,),
    )
    return await cur.fetchall()


async def insert_run(
    conn: Conn,
    *,
    run_id: uuid.UUID,
    thread_id: uuid.UUID,
    tenant_id: str,
    owner_id: str,
    assistant_id: str,
    kwargs: str,
    metadata: str,
    multitask_strategy: str,
    after_seconds: float | None,
    request_key: str | None = None,
    request_hash: str | None = None,
    events_mode: str = "live",
) -> DictRow:
    """Insert a pending run (JSON given as text) and return its row.

    `events_mode`: `live` or `deferred`, how its worker writes its events (`runs.events_mode`).
    """
    cur = await conn.execute(
        "INSERT INTO runs (run_id, thread_id, tenant_id, owner_id, assistant_id, status,"  # noqa: S608
        " kwargs, metadata, multitask_strategy, created_at, updated_at, request_key,"
        " request_hash, events_mode)"
        " VALUES (%s, %s, %s, %s, %s, 'pending', %s::jsonb, %s::jsonb, %s,"
        " now() + make_interval(secs => %s), now(), %s, %s, %s)"
        f" RETURNING {RUN_COLUMNS}",
        (
            run_id,
            thread_id,
            tenant_id,
            owner_id,
            assistant_id,
            kwargs,
            metadata,
            multitask_strategy,
            after_seconds or 0.0,
            request_key,
            request_hash,
            events_mode,
        ),
    )
    row = await cur.fetchone()
    assert row is not None
    return row


async def run_by_request_key(
    conn: Conn, tenant_id: str, owner_id: str, request_key: str
) -> DictRow | None:
    """The run a client created earlier with the same request key, if any."""
    cur = await conn.execute(
        f"SELECT {RUN_COLUMNS}, r.request_hash FROM runs r"  # noqa: S608 - constant
        " WHERE r.tenant_id = %s AND r.owner_id = %s AND r.request_key = %s",
        (tenant_id, owner_id, request_key),
    )
    return await cur.fetchone()


async def latest_input_run(conn: Conn, thread_id: uuid.UUID) -> DictRow | None:
    """The thread's newest run that carried an input (not a resume or a continuation)."""
    cur = await conn.execute(
        f"SELECT {RUN_COLUMNS}, r.request_hash FROM runs r"  # noqa: S608 - constant
        " WHERE r.thread_id = %s AND r.kwargs->'input' IS NOT NULL"
        " AND jsonb_typeof(r.kwargs->'input') <> 'null'"
        " ORDER BY r.created_at DESC, r.run_id DESC LIMIT 1",
        (thread_id,),
    )
    return await cur.fetchone()


async def run_side_effects(conn: Conn, run_id: uuid.UUID) -> int:
    """How many side effects (refunds) a run executed."""
    cur = await conn.execute("SELECT count(*) AS n FROM refunds WHERE run_id = %s", (run_id,))
    row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def get_run(conn: Conn, run_id: uuid.UUID, *, lock: bool = False) -> DictRow | None:
    """Return a run row with its thread's owner and tenant, or None."""
    sql = (
        f"SELECT {_R_COLUMNS}, t.owner_id AS thread_owner_id,"  # noqa: S608 - constants only
        " t.tenant_id AS thread_tenant_id FROM runs r"
        " JOIN threads t ON t.thread_id = r.thread_id WHERE r.run_id = %s"
    )
    cur = await conn.execute(sql + (" FOR UPDATE OF r" if lock else ""), (run_id,))
    return await cur.fetchone()


async def get_output(conn: Conn, run_id: uuid.UUID) -> tuple[str, str | None] | None:
    """Return `(status, output as JSON text)` of a run, or None when it no longer exists."""
    cur = await conn.execute(
        "SELECT status, output::text AS output FROM runs WHERE run_id = %s", (run_id,)
    )
    row = await cur.fetchone()
    return None if row is None else (row["status"], row["output"])


async def list_runs(
    conn: Conn, thread_id: uuid.UUID, *, limit: int, offset: int, status: str | None
) -> list[DictRow]:
    """A thread's runs, newest first."""
    cur = await conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE thread_id = %s"  # noqa: S608 - constant
        " AND (%s::text IS NULL OR status = %s) ORDER BY created_at DESC, run_id DESC"
        " LIMIT %s OFFSET %s",
        (thread_id, status, status, limit, offset),
    )
    return await cur.fetchall()


async def delete_run(conn: Conn, run_id: uuid.UUID) -> bool:
    """Delete a run (a trigger deletes its events); False when it did not exist."""
    cur = await conn.execute("DELETE FROM runs WHERE run_id = %s", (run_id,))
    return cur.rowcount == 1


async def cancel_pending(conn: Conn, run_id: uuid.UUID, action: str) -> bool:
    """Cancel a run that has not started: `interrupt` marks it, `rollback` deletes it."""
    if action == "rollback":
        cur = await conn.execute(
            "DELETE FROM runs WHERE run_id = %s AND status = 'pending'", (run_id,)
        )
    else:
        cur = await conn.execute(
            "UPDATE runs SET status = 'interrupted', cancel_action = 'interrupt',"
            " updated_at = now() WHERE run_id = %s AND status = 'pending'",
            (run_id,),
        )
    return cur.rowcount == 1


async def request_cancel(conn: Conn, run_id: uuid.UUID, action: str) -> bool:
    """Ask the worker executing a running run to cancel it (a rollback wins over interrupt)."""
    cur = await conn.execute(
        "UPDATE runs SET cancel_action = CASE WHEN cancel_action = 'rollback' THEN"
        " 'rollback' ELSE %s END, updated_at = now() WHERE run_id = %s AND status = 'running'",
        (action, run_id),
    )
    if cur.rowcount == 1:
        await notify(conn, CANCEL_CHANNEL, f"{run_id}:{action}")
        return True
    return False
