"""Following a run from a request: where a joining stream starts, its events, its end."""

from __future__ import annotations

import uuid
from collections.abc import AsyncGenerator, Collection

from core.errors import Unprocessable
from graph.runtime import Runtime
from server.runs import repo
from server.runs.events import EventHub, join_point, tail, wait_until_done


class RunFollower:
    """Streams and waits on runs, served by any replica from `run_events` and `runs`.

    Args:
        runtime: the process runtime (its pool).
        hub: wakes followers on NOTIFY (a polling-only hub when no worker runs here).
    """

    def __init__(self, runtime: Runtime, hub: EventHub) -> None:
        self.runtime = runtime
        self.pool = runtime.pool
        self.hub = hub

    async def start_seq(self, run_id: uuid.UUID, last_event_id: str | None) -> int | None:
        """Where a joining stream starts: after `Last-Event-ID`, else at the live edge.

        None: the live edge of a deferred run, known once its worker stored its buffer
        (see `server.runs.events.join_point`).
        """
        try:
            return await join_point(self.pool, run_id, last_event_id)
        except ValueError:
            raise Unprocessable(
                f"Last-Event-ID must be an integer, got {last_event_id!r}"
            ) from None

    def events(
        self,
        run_id: uuid.UUID,
        *,
        after_seq: int | None = -1,
        names: Collection[str] | None = None,
    ) -> AsyncGenerator[repo.EventRow | None]:
        """Follow a run's events (see `server.runs.events.tail`)."""
        return tail(self.pool, self.hub, run_id, after_seq=after_seq, events=names)

    def outcome(self, run_id: uuid.UUID) -> AsyncGenerator[tuple[str, str | None] | None]:
        """Wait for a run's end (see `server.runs.events.wait_until_done`)."""
        return wait_until_done(self.pool, self.hub, run_id)
