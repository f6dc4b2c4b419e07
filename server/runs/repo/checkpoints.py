"""Raw SQL on LangGraph's checkpoint tables, for what its saver offers no call for.

A rollback deletes the checkpoints one run wrote; a cancel finds the checkpoint before it.
"""

from __future__ import annotations

import uuid

from core.db.pool import Conn


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
