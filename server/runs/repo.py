"""SQL for runs, run_events and the thread columns the runs engine owns.

Every function takes an open connection (autocommit, dict rows; see `core.db.pool`), so
callers compose them inside one `conn.transaction()` where atomicity matters. The worker's
writes are fenced by `(worker_id, attempt, status = 'running')`: a worker that lost its lease
cannot overwrite the run that another replica took over.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.rows import DictRow

from core.db.pool import Conn

RUNS_CHANNEL = "steward_runs"
"""NOTIFY channel: a run became claimable (payload ignored)."""
EVENTS_CHANNEL = "steward_run_events"
"""NOTIFY channel: new events or a status change for run `<payload>`."""
CANCEL_CHANNEL = "steward_run_cancel"
"""NOTIFY channel: run `<run_id>:<action>` should be cancelled by whoever executes it."""

RUN_COLUMNS = (
    "run_id, thread_id, tenant_id, owner_id, assistant_id, status, kwargs, metadata,"
    " multitask_strategy, worker_id, lease_expires_at, attempt, cancel_action, error,"
    " created_at, updated_at"
)
_R_COLUMNS = ", ".join("r." + c.strip() for c in RUN_COLUMNS.split(","))


@dataclass(frozen=True, slots=True)
class EventRow:
    """One stored stream event; `data` is the JSON text as stored."""

    seq: int
    event: str
    data: str


async def notify(conn: Conn, channel: str, payload: str = "") -> None:
    """Send a NOTIFY (delivered when the surrounding transaction commits)."""
    await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


# --------------------------------------------------------------------------- threads


async def get_thread(conn: Conn, thread_id: uuid.UUID, *, lock: bool = False) -> DictRow | None:
    """Return the thread row (`FOR UPDATE` when `lock`), or None."""
    sql = (
        "SELECT thread_id, tenant_id, owner_id, status, metadata FROM threads"  # noqa: S608
        " WHERE thread_id = %s" + (" FOR UPDATE" if lock else "")
    )
    cur = await conn.execute(sql, (thread_id,))
    return await cur.fetchone()


async def insert_thread(
    conn: Conn, thread_id: uuid.UUID, *, tenant_id: str, owner_id: str, metadata: str = "{}"
) -> bool:
    """Create a thread if the id is free; return False when it already exists."""
    cur = await conn.execute(
        "INSERT INTO threads (thread_id, tenant_id, owner_id, metadata, status)"
        " VALUES (%s, %s, %s, %s::jsonb, 'idle') ON CONFLICT (thread_id) DO NOTHING",
        (thread_id, tenant_id, owner_id, metadata),
    )
    return cur.rowcount == 1


async def lock_thread(conn: Conn, thread_id: uuid.UUID) -> None:
    """Lock a thread's row: the first lock of every transaction that writes thread and runs.

    The lock order is thread row, then run rows, then approval rows (docs/http-service.md,
    "Lock order"); taking them in one order everywhere keeps concurrent creates and finishes
    of one thread from deadlocking.
    """
    await conn.execute("SELECT 1 FROM threads WHERE thread_id = %s FOR UPDATE", (thread_id,))


async def mark_thread_busy(conn: Conn, thread_id: uuid.UUID, metadata_patch: str) -> None:
    """Set the thread `busy` and merge `metadata_patch` (JSON) into its metadata."""
    await conn.execute(
        "UPDATE threads SET status = 'busy', metadata = metadata || %s::jsonb,"
        " updated_at = now() WHERE thread_id = %s",
        (metadata_patch, thread_id),
    )


async def settle_thread_status(conn: Conn, thread_id: uuid.UUID, status: str) -> None:
    """Set the thread's status after a run, or `busy` while another run is still active."""
    await conn.execute(
        "UPDATE threads SET updated_at = now(), status = CASE WHEN EXISTS ("
        "  SELECT 1 FROM runs WHERE thread_id = %(t)s AND status IN ('pending', 'running'))"
        " THEN 'busy' ELSE %(s)s END WHERE thread_id = %(t)s",
        {"t": thread_id, "s": status},
    )


async def delete_thread_row(conn: Conn, thread_id: uuid.UUID) -> None:
    """Delete a thread row (its runs and events cascade)."""
    await conn.execute("DELETE FROM threads WHERE thread_id = %s", (thread_id,))


# --------------------------------------------------------------------------- runs: API side


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
) -> DictRow:
    """Insert a pending run (JSON given as text) and return its row."""
    cur = await conn.execute(
        "INSERT INTO runs (run_id, thread_id, tenant_id, owner_id, assistant_id, status,"  # noqa: S608
        " kwargs, metadata, multitask_strategy, created_at, updated_at, request_key,"
        " request_hash)"
        " VALUES (%s, %s, %s, %s, %s, 'pending', %s::jsonb, %s::jsonb, %s,"
        " now() + make_interval(secs => %s), now(), %s, %s)"
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


async def get_output(conn: Conn, run_id: uuid.UUID) -> tuple[str, Any] | None:
    """Return `(status, output)` of a run, or None when it no longer exists."""
    cur = await conn.execute("SELECT status, output FROM runs WHERE run_id = %s", (run_id,))
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
    """Delete a run (its events cascade); False when it did not exist."""
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


async def next_seq(conn: Conn, run_id: uuid.UUID) -> int:
    """The next free event sequence number of a run."""
    cur = await conn.execute(
        "SELECT coalesce(max(seq), -1) + 1 AS seq FROM run_events WHERE run_id = %s", (run_id,)
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row["seq"])


async def insert_events(
    conn: Conn,
    run_id: uuid.UUID,
    events: Sequence[tuple[int, str, str]],
    *,
    fence: tuple[str, int] | None = None,
) -> bool:
    """Append events `(seq, event, json_text)`.

    With `fence=(worker_id, attempt)` the rows are written only while that worker still holds
    the run; returns False when the fence refused the write.
    """
    if not events:
        return True
    seqs = [e[0] for e in events]
    names = [e[1] for e in events]
    datas = [e[2] for e in events]
    sql = (
        "INSERT INTO run_events (run_id, seq, event, data)"
        " SELECT %s, s, e, d::jsonb FROM unnest(%s::bigint[], %s::text[], %s::text[])"
        " AS t(s, e, d)"
    )
    params: tuple[Any, ...] = (run_id, seqs, names, datas)
    if fence is not None:
        sql += (
            " WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = %s AND worker_id = %s"
            " AND attempt = %s AND status = 'running')"
        )
        params = (*params, run_id, fence[0], fence[1])
    sql += " ON CONFLICT (run_id, seq) DO NOTHING"
    cur = await conn.execute(sql, params)
    return fence is None or cur.rowcount > 0


async def tail_events(
    conn: Conn, run_id: uuid.UUID, after_seq: int, limit: int
) -> tuple[str | None, list[EventRow]]:
    """Return the run's status and its events after `after_seq`, from one snapshot.

    Because both come from the same statement, a terminal status guarantees that every event
    written before (or with) the final status is in the returned list or an earlier one.
    Returns `(None, [])` when the run does not exist (deleted or rolled back).
    """
    cur = await conn.execute(
        "SELECT r.status, e.seq, e.event, e.data::text AS data FROM runs r"
        " LEFT JOIN LATERAL (SELECT seq, event, data FROM run_events"
        "   WHERE run_id = r.run_id AND seq > %s ORDER BY seq LIMIT %s) e ON true"
        " WHERE r.run_id = %s ORDER BY e.seq",
        (after_seq, limit, run_id),
    )
    rows = await cur.fetchall()
    if not rows:
        return None, []
    events = [
        EventRow(int(r["seq"]), r["event"], r["data"] if r["data"] is not None else "null")
        for r in rows
        if r["seq"] is not None
    ]
    return rows[0]["status"], events


async def step_events_of(conn: Conn, run_id: uuid.UUID) -> list[tuple[str, str]]:
    """The run's stored `updates` and `values` events `(event, json)`, in order."""
    cur = await conn.execute(
        "SELECT event, data::text AS data FROM run_events"
        " WHERE run_id = %s AND event IN ('updates', 'values') ORDER BY seq",
        (run_id,),
    )
    return [(r["event"], r["data"]) for r in await cur.fetchall()]


async def max_seq(conn: Conn, run_id: uuid.UUID) -> int:
    """The highest stored event sequence number of a run (-1 when none)."""
    cur = await conn.execute(
        "SELECT coalesce(max(seq), -1) AS seq FROM run_events WHERE run_id = %s", (run_id,)
    )
    row = await cur.fetchone()
    return -1 if row is None else int(row["seq"])


# --------------------------------------------------------------------------- runs: worker side


async def claim_next(conn: Conn, worker_id: str, lease_s: float) -> DictRow | None:
    """Claim the oldest due pending run whose thread has no running run (FIFO per thread).

    `FOR UPDATE SKIP LOCKED` lets replicas claim concurrently; the partial unique index
    `runs_one_running_per_thread` refuses a second running run on a thread should two claims
    still race (the caller treats that `UniqueViolation` as "nothing to claim").
    """
    cur = await conn.execute(
        "UPDATE runs SET status = 'running', worker_id = %(w)s,"  # noqa: S608 - constant
        " lease_expires_at = now() + make_interval(secs => %(l)s), updated_at = now()"
        " WHERE run_id = ("
        "  SELECT r.run_id FROM runs r WHERE r.status = 'pending' AND r.created_at <= now()"
        "   AND NOT EXISTS (SELECT 1 FROM runs x WHERE x.thread_id = r.thread_id"
        "                   AND x.status = 'running')"
        "   AND NOT EXISTS (SELECT 1 FROM runs y WHERE y.thread_id = r.thread_id"
        "                   AND y.status = 'pending'"
        "                   AND (y.created_at, y.run_id) < (r.created_at, r.run_id))"
        "  ORDER BY r.created_at, r.run_id LIMIT 1 FOR UPDATE SKIP LOCKED)"
        " AND status = 'pending'"
        f" RETURNING {RUN_COLUMNS}",
        {"w": worker_id, "l": lease_s},
    )
    return await cur.fetchone()


async def renew_leases(
    conn: Conn, worker_id: str, run_ids: Sequence[uuid.UUID], lease_s: float
) -> list[DictRow]:
    """Extend this worker's leases; returns the rows still held (with their cancel_action)."""
    if not run_ids:
        return []
    cur = await conn.execute(
        "UPDATE runs SET lease_expires_at = now() + make_interval(secs => %s)"
        " WHERE worker_id = %s AND status = 'running' AND run_id = ANY(%s)"
        " RETURNING run_id, attempt, cancel_action",
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
    """Set a held run's final status; None when this worker no longer holds it."""
    cur = await conn.execute(
        "UPDATE runs SET status = %s, output = %s::jsonb, error = %s::jsonb,"  # noqa: S608
        " lease_expires_at = NULL, updated_at = now()"
        " WHERE run_id = %s AND worker_id = %s AND attempt = %s AND status = 'running'"
        f" RETURNING {RUN_COLUMNS}",
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


async def delete_run_checkpoints(
    conn: Conn, thread_id: uuid.UUID, run_id: uuid.UUID, *, drop_resume: bool
) -> None:
    """Delete the checkpoints (and their writes and orphaned blobs) a run wrote (rollback).

    With `drop_resume`, also drop the `__resume__` write the run left on the checkpoint it
    started from, so the rolled-back answer is not replayed by a later run.
    """
    tid, rid = str(thread_id), str(run_id)
    await conn.execute(
        "DELETE FROM checkpoint_writes w USING checkpoints c"
        " WHERE c.thread_id = %s AND c.metadata ->> 'run_id' = %s AND w.thread_id = c.thread_id"
        " AND w.checkpoint_ns = c.checkpoint_ns AND w.checkpoint_id = c.checkpoint_id",
        (tid, rid),
    )
    await conn.execute(
        "DELETE FROM checkpoints WHERE thread_id = %s AND metadata ->> 'run_id' = %s", (tid, rid)
    )
    await conn.execute(
        "DELETE FROM checkpoint_blobs b WHERE b.thread_id = %s AND NOT EXISTS ("
        " SELECT 1 FROM checkpoints c WHERE c.thread_id = b.thread_id"
        " AND c.checkpoint_ns = b.checkpoint_ns"
        " AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version)",
        (tid,),
    )
    if drop_resume:
        await conn.execute(
            "DELETE FROM checkpoint_writes w WHERE w.thread_id = %s AND w.channel = '__resume__'"
            " AND w.checkpoint_id = (SELECT max(checkpoint_id) FROM checkpoints c"
            "   WHERE c.thread_id = %s AND c.checkpoint_ns = w.checkpoint_ns)",
            (tid, tid),
        )


async def latest_checkpoint_not_of(
    conn: Conn, thread_id: uuid.UUID, run_id: uuid.UUID
) -> str | None:
    """The newest root checkpoint of a thread that another run (or no run) wrote."""
    cur = await conn.execute(
        "SELECT checkpoint_id FROM checkpoints WHERE thread_id = %s AND checkpoint_ns = ''"
        " AND coalesce(metadata ->> 'run_id', '') <> %s ORDER BY checkpoint_id DESC LIMIT 1",
        (str(thread_id), str(run_id)),
    )
    row = await cur.fetchone()
    return None if row is None else str(row["checkpoint_id"])


# --------------------------------------------------------------------------- housekeeping


async def expired_temporary_threads(conn: Conn, grace_s: float, limit: int = 50) -> list[str]:
    """Temporary (stateless) threads whose runs all ended more than `grace_s` ago."""
    cur = await conn.execute(
        "SELECT r.thread_id FROM runs r WHERE r.kwargs @> '{\"temporary\": true}'::jsonb"
        " AND coalesce(r.kwargs ->> 'on_completion', 'delete') = 'delete'"
        " GROUP BY r.thread_id"
        " HAVING bool_and(r.status NOT IN ('pending', 'running'))"
        "   AND max(r.updated_at) < now() - make_interval(secs => %s)"
        " LIMIT %s",
        (grace_s, limit),
    )
    return [str(r["thread_id"]) for r in await cur.fetchall()]


async def purge_events(conn: Conn, *, plain_after_s: float, resumable_after_s: float) -> int:
    """Delete the event logs of finished runs (sooner for runs that are not resumable)."""
    cur = await conn.execute(
        "DELETE FROM run_events e USING runs r WHERE e.run_id = r.run_id"
        " AND r.status NOT IN ('pending', 'running')"
        " AND r.updated_at < now() - make_interval(secs => CASE"
        "   WHEN coalesce((r.kwargs ->> 'stream_resumable')::boolean, false) THEN %s"
        "   ELSE %s END)",
        (resumable_after_s, plain_after_s),
    )
    return cur.rowcount


__all__ = [
    "CANCEL_CHANNEL",
    "EVENTS_CHANNEL",
    "RUNS_CHANNEL",
    "Conn",
    "EventRow",
]
