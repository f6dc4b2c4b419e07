"""What the runs table says of one run's event log (shared by the event-log tests)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.db.pool import DbPool


async def events_row(pool: DbPool, run_id: str) -> dict[str, Any]:
    """The run's status, its `events_mode` and how many of its events are stored."""
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT status, events_mode, (SELECT count(*) FROM run_events e"
            " WHERE e.run_id = r.run_id) AS stored FROM runs r WHERE run_id = %s",
            (uuid.UUID(run_id),),
        )
        row = await cur.fetchone()
    assert row is not None
    return dict(row)
