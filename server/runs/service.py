"""`RunService`: the runs engine as the routes see it, one facade over its parts.

Creating (`server.runs.create`), reading (`server.runs.queries`), cancelling
(`server.runs.cancel`), following (`server.runs.follow`) and cleaning up after stateless runs
(`server.runs.cleanup`) each live in their own module; this class only binds them to one
runtime so a route needs a single object.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Collection
from typing import Any

from core.identity import Principal
from graph.runtime import Runtime
from server.runs import repo
from server.runs.cancel import RunCanceller
from server.runs.cleanup import discard_temporary_thread
from server.runs.create import RunCreator
from server.runs.events import EventHub
from server.runs.follow import RunFollower
from server.runs.models import CancelAction, Run, RunCreate
from server.runs.queries import RunQueries


class RunService:
    """Runs, scoped by the calling principal (a thread it cannot see is a 404).

    Args:
        runtime: the process runtime (pool, graph, checkpointer, settings).
        hub: the process's notification hub (the run worker's); None polls instead.
    """

    def __init__(self, runtime: Runtime, hub: EventHub | None = None) -> None:
        self.runtime = runtime
        self.hub = hub if hub is not None else EventHub(None)
        self._creator = RunCreator(runtime)
        self._queries = RunQueries(runtime)
        self._canceller = RunCanceller(runtime, self.hub)
        self._follower = RunFollower(runtime, self.hub)

    async def create(
        self,
        principal: Principal,
        thread_id: str | uuid.UUID | None,
        body: RunCreate,
        *,
        idempotency_key: str | None = None,
        approval_id: uuid.UUID | None = None,
        decision_comment: str | None = None,
        streamed: bool = False,
    ) -> Run:
        """Create a pending run (see `server.runs.create.RunCreator.create`)."""
        return await self._creator.create(
            principal,
            thread_id,
            body,
            idempotency_key=idempotency_key,
            approval_id=approval_id,
            decision_comment=decision_comment,
            streamed=streamed,
        )

    async def get_row(
        self, principal: Principal, thread_id: str | uuid.UUID, run_id: str | uuid.UUID
    ) -> dict[str, Any]:
        """The run's row (see `server.runs.queries.RunQueries.get_row`)."""
        return await self._queries.get_row(principal, thread_id, run_id)

    async def get(
        self, principal: Principal, thread_id: str | uuid.UUID, run_id: str | uuid.UUID
    ) -> Run:
        """Return one run (404 when missing or invisible)."""
        return await self._queries.get(principal, thread_id, run_id)

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
        return await self._queries.list_runs(
            principal, thread_id, limit=limit, offset=offset, status=status
        )

    async def delete(
        self, principal: Principal, thread_id: str | uuid.UUID, run_id: str | uuid.UUID
    ) -> None:
        """Delete a finished run (409 while it is pending or running)."""
        await self._queries.delete(principal, thread_id, run_id)

    async def current_output(self, thread_id: uuid.UUID) -> str:
        """The thread's latest values with pending interrupts merged in, as JSON text."""
        return await self._queries.current_output(thread_id)

    async def cancel(
        self,
        principal: Principal,
        thread_id: str | uuid.UUID,
        run_id: str | uuid.UUID,
        *,
        action: CancelAction = "interrupt",
        wait: bool = False,
    ) -> None:
        """Cancel one run (see `server.runs.cancel.RunCanceller.cancel`)."""
        await self._canceller.cancel(principal, thread_id, run_id, action=action, wait=wait)

    async def cancel_many(
        self,
        principal: Principal,
        *,
        thread_id: str | None,
        run_ids: Collection[str] | None,
        status: str | None,
        action: CancelAction = "interrupt",
    ) -> None:
        """Cancel runs by id or a thread's active runs (see `RunCanceller.cancel_many`)."""
        await self._canceller.cancel_many(
            principal, thread_id=thread_id, run_ids=run_ids, status=status, action=action
        )

    async def cancel_by_id(self, run_id: uuid.UUID, action: str = "interrupt") -> None:
        """Cancel a run the caller already proved it may see (client disconnects)."""
        await self._canceller.cancel_by_id(run_id, action)

    async def start_seq(self, run_id: uuid.UUID, last_event_id: str | None) -> int | None:
        """Where a joining stream starts: after `Last-Event-ID`, else at the live edge."""
        return await self._follower.start_seq(run_id, last_event_id)

    def events(
        self,
        run_id: uuid.UUID,
        *,
        after_seq: int | None = -1,
        names: Collection[str] | None = None,
    ) -> AsyncGenerator[repo.EventRow | None]:
        """Follow a run's events (see `server.runs.events.tail`)."""
        return self._follower.events(run_id, after_seq=after_seq, names=names)

    def outcome(self, run_id: uuid.UUID) -> AsyncGenerator[tuple[str, str | None] | None]:
        """Wait for a run's end (see `server.runs.events.wait_until_done`)."""
        return self._follower.outcome(run_id)

    async def discard_temporary_thread(self, thread_id: uuid.UUID) -> None:
        """Delete a stateless run's thread once its runs ended (`server.runs.cleanup`)."""
        await discard_temporary_thread(self.runtime, thread_id)


__all__ = ["RunService"]
