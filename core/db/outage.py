"""What a database outage looks like, and waiting one out while the service starts.

Two questions, two answers:
- `connection_lost`: is this error the connection (a refused or dropped connection, a server
  shutting down), not a broken query? Readers that poll use it to wait instead of failing.
- `lost_database`: did this failure, or what it was raised from, come from the database
  being unreachable? A run that fails so goes back to the queue instead of ending `error`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg
from psycopg_pool import PoolTimeout

log = logging.getLogger(__name__)

T = TypeVar("T")

CONNECTION_SQLSTATES = ("08", "57P01", "57P02", "57P03")
"""Connection exceptions and server shutdowns: transient, the database comes back."""


def connection_lost(exc: BaseException) -> bool:
    """True when `exc` means the database is (for now) unreachable, not a broken query."""
    if isinstance(exc, PoolTimeout | OSError):
        return True
    if not isinstance(exc, psycopg.OperationalError):
        return False
    state = exc.sqlstate
    return state is None or state.startswith(CONNECTION_SQLSTATES)


_REFUSALS = (
    "does not exist",
    "authentication failed",
    "no pg_hba.conf entry",
    "permission denied",
)
"""What a server says when it refuses a role, a password or a database. libpq gives errors
raised while connecting no SQLSTATE, so the text is all there is; a server whose
`lc_messages` is not English is not recognised, and its refusal is waited out like an
outage until `STEWARD_DB_STARTUP_TIMEOUT_S`."""


def refused_by_server(exc: BaseException) -> bool:
    """True when the server answered and refused the connection: a setting to fix.

    A wrong password, an unknown role or database is not an outage to wait out.
    """
    text = str(exc)
    return "FATAL:" in text and any(refusal in text for refusal in _REFUSALS)


def lost_database(exc: BaseException) -> bool:
    """True when `exc` (or what it was raised from) means the database was unreachable.

    `TimeoutError` is an `OSError` too, but a graph's timeout (a slow provider) is a real
    failure, not a database outage.
    """
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, psycopg.OperationalError):
            return True
        if isinstance(seen, OSError) and not isinstance(seen, TimeoutError):
            return True
        seen = seen.__cause__
    return False


def _unreachable(exc: BaseException) -> bool:
    """`connection_lost` for `exc` or what it was raised from (an Alembic error wraps psycopg's).

    A bare `OSError` does not count: at start-up that is a file (the dev key's, the index).
    """
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, psycopg.OperationalError) and connection_lost(seen):
            return True
        seen = seen.__cause__
    return False


async def through_outages(step: Callable[[], Awaitable[T]], *, what: str, timeout_s: float) -> T:
    """Run a start-up `step`, again and again while the database is unreachable.

    A replica that starts while Postgres restarts (a deploy, a failover) waits for it instead
    of exiting; after `timeout_s` the last error is raised and the start fails. A server that
    refuses the credentials or the database fails the start at once (`refused_by_server`).

    Args:
        step: the work (it must be safe to repeat: migrations, idempotent upserts, reads).
        what: named in the log line.
        timeout_s: how long to keep trying (`STEWARD_DB_STARTUP_TIMEOUT_S`).
    """
    deadline = time.monotonic() + timeout_s
    delay = 0.25
    while True:
        try:
            return await step()
        except Exception as exc:
            if (
                refused_by_server(exc)
                or not _unreachable(exc)
                or time.monotonic() + delay > deadline
            ):
                raise
            log.warning("start-up: %s: the database is unreachable (%s); retrying", what, exc)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


__all__ = [
    "CONNECTION_SQLSTATES",
    "connection_lost",
    "lost_database",
    "refused_by_server",
    "through_outages",
]
