"""Retrying transactions that Postgres aborted for a deadlock or a serialization failure.

Both mean "try again": the transaction was rolled back whole. They are retried inside the
engine (a few times, with a short jittered pause) and never reported to a client as "database
unreachable".
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncIterator
from types import TracebackType

from psycopg import errors

log = logging.getLogger(__name__)

RETRYABLE = (errors.DeadlockDetected, errors.SerializationFailure)
ATTEMPTS = 5


class _Attempt:
    """One try: a retryable failure inside `with attempt:` is swallowed until the last try."""

    def __init__(self, what: str, number: int) -> None:
        self.what = what
        self.number = number
        self.failed = False

    def __enter__(self) -> _Attempt:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None or not isinstance(exc, RETRYABLE) or self.number >= ATTEMPTS:
            return False
        self.failed = True
        log.info("%s: %s, retrying (attempt %d)", self.what, type(exc).__name__, self.number)
        return True


async def retry_conflicts(what: str) -> AsyncIterator[_Attempt]:
    """Yield attempts until one succeeds (use as `async for a in ...: with a: ...`)."""
    for number in range(1, ATTEMPTS + 1):
        attempt = _Attempt(what, number)
        yield attempt
        if not attempt.failed:
            return
        await asyncio.sleep(random.uniform(0.01, 0.05) * number)  # noqa: S311 - jitter


__all__ = ["ATTEMPTS", "RETRYABLE", "retry_conflicts"]
