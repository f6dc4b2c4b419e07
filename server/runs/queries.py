"""Reading (and deleting) runs on behalf of a principal: a thread it cannot see is a 404."""

from __future__ import annotations

import uuid
from typing import Any

from langchain_core.runnables import RunnableConfig
from psycopg.rows import DictRow

from core.errors import Conflict, NotFound
from core.identity import Principal
from graph.runtime import Runtime
from server import threads_repo
from server.runs import repo
from server.runs.invocation import final_output
from server.runs.models import ACTIVE_STATUSES, Run


def parse_uuid(value: str | uuid.UUID, what: str) -> uuid.UUID:
    """Parse an id from a path; a malformed one is simply not found (404)."""
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise NotFound(f"{what} {value} not found") from None


def thread_config(thread_id: uuid.UUID) -> RunnableConfig:
    """The config that reads a thread's latest checkpoint."""
    return RunnableConfig(configurable={"thread_id": str(thread_id)})


class RunQueries:
    """Runs and their threads as the calling principal may see them.

    Args:
        runtime: the process runtime (pool, graph).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.pool = runtime.pool
        self.graph = runtime.graph

    async def require_visible(
        self, principal: Principal, thread_id: uuid.UUID, *, missing_ok: bool = False
    ) -> DictRow | None:
        """The thread's row if the principal can see it (None if missing and `missing_ok`).

        Raises:
            NotFound: the thread is missing (unless `missing_ok`) or invisible.
        """
        async with self.pool.connection() as conn:
            thread = await threads_repo.get_thread(conn, thread_id)
        if thread is None:
            if missing_ok:
                return None
            raise NotFound(f"thread {thread_id} not found")
        if not principal.can_see(thread["owner_id"], thread["tenant_id"]):
            raise NotFound(f"thread {thread_id} not found")
        return thread

    async def get_row(
        self, principal: Principal, thread_id: str | uuid.UUID, run_id: str | uuid.UUID
    ) -> dict[str, Any]:
        """The run's row, if it exists on that thread and the principal can see the thread.

        Raises:
            NotFound: otherwise.
        """
        tid = parse_uuid(thread_id, "thread")
        rid = parse_uuid(run_id, "run")
        async with self.pool.connection() as conn:
            row = await repo.get_run(conn, rid)
        if (
            row is None
            or row["thread_id"] != tid
            or not principal.can_see(row["thread_owner_id"], row["thread_tenant_id"])
        ):
            raise NotFound(f"run {run_id} not found")
        return dict(row)

    async def get(
        self, principal: Principal, thread_id: str | uuid.UUID, run_id: str | uuid.UUID
    ) -> Run:
        """Return one run (404 when missing or invisible)."""
        return Run.from_row(await self.get_row(principal, thread_id, run_id))

    async def list_runs(
        self,
        principal: Principal,
        thread_id: str | uuid.UUID,
        *,
        limit: int = 10,
        offset: int = 0,
        status: str | None = None,
    ) -> list[Run]:
        """A thread's runs, newest first (404 when the thread is missing or invisible)."""
        tid = parse_uuid(thread_id, "thread")
        await self.require_visible(principal, tid)
        async with self.pool.connection() as conn:
            rows = await repo.list_runs(conn, tid, limit=limit, offset=offset, status=status)
        return [Run.from_row(dict(r)) for r in rows]

    async def delete(
        self, principal: Principal, thread_id: str | uuid.UUID, run_id: str | uuid.UUID
    ) -> None:
        """Delete a finished run (409 while it is pending or running)."""
        row = await self.get_row(principal, thread_id, run_id)
        if row["status"] in ACTIVE_STATUSES:
            raise Conflict(f"run {run_id} is {row['status']}; cancel it first")
        async with self.pool.connection() as conn:
            await repo.delete_run(conn, row["run_id"])

    async def current_output(self, thread_id: uuid.UUID) -> str:
        """The thread's latest values with pending interrupts merged in, as JSON text."""
        state = await self.graph.aget_state(thread_config(thread_id))
        return final_output(state)
