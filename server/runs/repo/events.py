"""SQL for `run_events`: the stored stream of every run, appended and tailed by sequence."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.db.pool import Conn
from server.runs.repo.channels import STREAM_CHANNEL, notify


@dataclass(frozen=True, slots=True)
class EventRow:
    """One stored stream event; `data` is the JSON text as stored."""

    seq: int
    event: str
    data: str


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


async def mark_live(conn: Conn, run_id: uuid.UUID, *, fence: tuple[str, int]) -> bool:
    """Record that a held run's events are stored as they come; False: no longer held."""
    cur = await conn.execute(
        "UPDATE runs SET events_mode = 'live' WHERE run_id = %s AND worker_id = %s"
        " AND attempt = %s AND status = 'running'",
        (run_id, fence[0], fence[1]),
    )
    return cur.rowcount == 1


async def want_live(conn: Conn, run_id: uuid.UUID) -> None:
    """A client follows the run: a deferred one is to store its events as they come.

    A pending run starts `live` when claimed; a running one's worker hears it on
    `STREAM_CHANNEL` (or at its next lease renewal) and sets `live` once it stored what it
    had buffered.
    """
    async with conn.transaction():
        cur = await conn.execute(
            "UPDATE runs SET events_mode = 'wanted' WHERE run_id = %s"
            " AND events_mode = 'deferred' AND status IN ('pending', 'running')"
            " RETURNING status",
            (run_id,),
        )
        row = await cur.fetchone()
        if row is not None and row["status"] == "running":
            await notify(conn, STREAM_CHANNEL, str(run_id))


async def live_edge(conn: Conn, run_id: uuid.UUID) -> int | None:
    """The run's last stored sequence number if that is its live edge, else None.

    It is once every event the run emitted so far is stored: the run is not running, or
    its events are written as they come. Returns -1 when the run does not exist.
    """
    cur = await conn.execute(
        "SELECT r.status, r.events_mode,"
        " (SELECT coalesce(max(seq), -1) FROM run_events WHERE run_id = r.run_id) AS seq"
        " FROM runs r WHERE r.run_id = %s",
        (run_id,),
    )
    row = await cur.fetchone()
    if row is None:
        return -1
    if row["status"] == "running" and row["events_mode"] != "live":
        return None
    return int(row["seq"])


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
