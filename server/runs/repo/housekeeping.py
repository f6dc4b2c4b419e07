"""SQL for periodic cleanup: expired temporary threads and old event logs."""

from __future__ import annotations

from core.db.pool import Conn


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
    """Delete the event logs of finished runs (sooner for runs that are not resumable).

    Events whose run is gone go too: `run_events` has no foreign key (migration 0011), and a
    batch that raced its run's deletion would stay forever.
    """
    cur = await conn.execute(
        "DELETE FROM run_events e WHERE NOT EXISTS (SELECT 1 FROM runs r"
        " WHERE r.run_id = e.run_id AND (r.status IN ('pending', 'running')"
        "  OR r.updated_at >= now() - make_interval(secs => CASE"
        "   WHEN coalesce((r.kwargs ->> 'stream_resumable')::boolean, false) THEN %s"
        "   ELSE %s END)))",
        (resumable_after_s, plain_after_s),
    )
    return cur.rowcount
