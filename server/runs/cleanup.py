"""Deleting a stateless run's temporary thread once every run on it ended."""

from __future__ import annotations

import uuid

from graph.runtime import Runtime
from server import threads_repo
from server.runs import repo
from server.runs.models import TERMINAL_STATUSES


async def discard_temporary_thread(runtime: Runtime, thread_id: uuid.UUID) -> None:
    """Delete a stateless run's thread, its runs and checkpoints once the run ended.

    Args:
        runtime: the process runtime (pool and checkpointer).
        thread_id: the temporary thread.
    """
    async with runtime.pool.connection() as conn:
        runs = await repo.list_runs(conn, thread_id, limit=100, offset=0, status=None)
    if any(r["status"] not in TERMINAL_STATUSES for r in runs):
        return
    if not all((r["kwargs"] or {}).get("on_completion") == "delete" for r in runs):
        return
    await runtime.checkpointer.adelete_thread(str(thread_id))
    async with runtime.pool.connection() as conn:
        await threads_repo.delete_thread_row(conn, thread_id)
