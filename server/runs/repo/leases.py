"""SQL for the worker's side of `runs`: claiming, leases, requeueing and finishing.

The worker's writes are fenced by `(worker_id, attempt, status = 'running')`: a worker that lost
its lease cannot overwrite the run that another replica took over.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from psycopg.rows import DictRow

from core.db.pool import Conn
from server.runs.repo.runs import RUN_COLUMNS


async def claim_next(conn: Conn, worker_id: str, lease_s: float) -> DictRow | None:
    """Claim the oldest due pending run whose thread has no running run (FIFO per thread).

    `FOR UPDATE SKIP LOCKED` lets replicas claim concurrently; the partial unique index
    `runs_one_running_per_thread` refuses a second running run on a thread should two claims
    still race (the caller treats that `UniqueViolation` as "nothing to claim").
    A deferred run whose stream a client joined while it waited starts `live`. The row carries
    `next_seq`, the run's next free event number (an earlier attempt's events come first),
    and `more_pending`: whether other due runs were pending when it was claimed.
    """
    cur = await conn.execute(
        "UPDATE runs SET status = 'running', worker_id = %(w)s,"  # noqa: S608 - constant
        " lease_expires_at = now() + make_interval(secs => %(l)s), updated_at = now(),"
        " events_mode = CASE events_mode WHEN 'wanted' THEN 'live' ELSE events_mode END"
        " WHERE run_id = ("
        "  SELECT r.run_id FROM runs r WHERE r.status = 'pending' AND r.created_at <= now()"
        "   AND NOT EXISTS (SELECT 1 FROM runs x WHERE x.thread_id = r.thread_id"
        "                   AND x.status = 'running')"
        "   AND NOT EXISTS (SELECT 1 FROM runs y WHERE y.thread_id = r.thread_id"
        "                   AND y.status = 'pending'"
        "                   AND (y.created_at, y.run_id) < (r.created_at, r.run_id))"
        "  ORDER BY r.created_at, r.run_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " AND status = 'pending'"
        f" RETURNING {RUN_COLUMNS}, (SELECT coalesce(max(e.seq), -1) + 1 FROM run_events e"
        "  WHERE e.run_id = runs.run_id) AS next_seq,"
        " EXISTS (SELECT 1 FROM runs p WHERE p.status = 'pending' AND p.created_at <= now()"
        "  AND p.run_id <> runs.run_id) AS more_pending",
        {"w": worker_id, "l": lease_s},
    )
    return await cur.fetchone()


async def renew_leases(
    conn: Conn, worker_id: str, run_ids: Sequence[uuid.UUID], lease_s: float
) -> list[DictRow]:
    """Extend this worker's leases; returns the rows still held (cancel_action, events_mode)."""
    if not run_ids:
        return []
    cur = await conn.execute(
        "UPDATE runs SET lease_expires_at = now() + make_interval(secs => %s)"
        " WHERE worker_id = %s AND status = 'running' AND run_id = ANY(%s)"
        " RETURNING run_id, attempt, cancel_action, events_mode",
        (lease_s, worker_id, list(run_ids)),
    )
    return await cur.fetchall()


async def requeue_expired(conn: Conn, max_attempts: int) -> tuple[list[DictRow], list[DictRow]]:
    """Put runs whose lease expired back to pending (attempt + 1), or fail them for good.

    A run fails once it lost `max_attempts` leases (`lost_leases`; hand-overs by a drain or
    a lost database do not count). Returns `(requeued, failed)` rows.
    """
    cur = await conn.execute(
        "UPDATE runs SET status = 'pending', worker_id = NULL, lease_expires_at = NULL,"
        " attempt = attempt + 1, lost_leases = lost_leases + 1, updated_at = now()"
        " WHERE status = 'running' AND lease_expires_at < now() AND lost_leases + 1 < %s"
        " RETURNING run_id, thread_id, attempt",
        (max_attempts,),
    )
    requeued = await cur.fetchall()
    cur = await conn.execute(
        "UPDATE runs SET status = 'error', lease_expires_at = NULL, updated_at = now(),"
        " lost_leases = lost_leases + 1,"
        " error = jsonb_build_object('error', 'LeaseExpired', 'message',"
        "   'the run was lost ' || (lost_leases + 1) || ' times (its server stopped); giving up'),"
        " output = jsonb_build_object('__error__', jsonb_build_object('error', 'LeaseExpired',"
        "   'message', 'the run was lost ' || (lost_leases + 1) || ' times; giving up'))"
        " WHERE status = 'running' AND lease_expires_at < now() AND lost_leases + 1 >= %s"
        " RETURNING run_id, thread_id, attempt",
        (max_attempts,),
    )
    failed = await cur.fetchall()
    return requeued, failed


async def finish_run(
    conn: Conn,
    run_id: uuid.UUID,
    *,
    fence: tuple[str, int],
    status: str,
    output: str | None,
    error: str | None,
) -> DictRow | None:
    """Set a held run's final status; None when this worker no longer holds it.

    The row comes back with `output_json`: the output as `/wait` reads it from the row.
    """
    cur = await conn.execute(
        "UPDATE runs SET status = %s, output = %s::jsonb, error = %s::jsonb,"  # noqa: S608
        " lease_expires_at = NULL, updated_at = now()"
        " WHERE run_id = %s AND worker_id = %s AND attempt = %s AND status = 'running'"
        f" RETURNING {RUN_COLUMNS}, output::text AS output_json",
        (status, output, error, run_id, fence[0], fence[1]),
    )
    return await cur.fetchone()


async def release_run(conn: Conn, run_id: uuid.UUID, *, fence: tuple[str, int]) -> bool:
    """Give a held run back to the queue (shutdown): pending again, attempt + 1."""
    cur = await conn.execute(
        "UPDATE runs SET status = 'pending', worker_id = NULL, lease_expires_at = NULL,"
        " attempt = attempt + 1, updated_at = now()"
        " WHERE run_id = %s AND worker_id = %s AND attempt = %s AND status = 'running'",
        (run_id, fence[0], fence[1]),
    )
    return cur.rowcount == 1


async def held_run(conn: Conn, run_id: uuid.UUID, *, fence: tuple[str, int]) -> DictRow | None:
    """Lock and return the run if this worker still holds it."""
    cur = await conn.execute(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = %s"  # noqa: S608 - constant
        " AND worker_id = %s AND attempt = %s AND status = 'running' FOR UPDATE",
        (run_id, fence[0], fence[1]),
    )
    return await cur.fetchone()


async def cancel_action_of(conn: Conn, run_id: uuid.UUID) -> str | None:
    """The cancel action requested for a run, if any."""
    cur = await conn.execute("SELECT cancel_action FROM runs WHERE run_id = %s", (run_id,))
    row = await cur.fetchone()
    return None if row is None else row["cancel_action"]
