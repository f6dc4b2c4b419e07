"""Work detached from the request that started it, kept referenced until it ends."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

log = logging.getLogger(__name__)

_BACKGROUND: set[asyncio.Task[Any]] = set()


def spawn_background(coro: Any, what: str) -> None:
    """Run `coro` detached from the request (e.g. cleanup after a client disconnected).

    Args:
        coro: the coroutine to run.
        what: what it does, for the warning logged if it fails.
    """
    task = asyncio.get_running_loop().create_task(coro)
    _BACKGROUND.add(task)

    def done(t: asyncio.Task[Any]) -> None:
        _BACKGROUND.discard(t)
        if not t.cancelled() and t.exception() is not None:
            log.warning("%s failed: %s", what, t.exception())

    task.add_done_callback(done)


async def drain_background(timeout_s: float) -> int:
    """Wait up to `timeout_s` for detached work at shutdown; returns how many did not end.

    What is still running then is cancelled: a cancel-on-disconnect that did not happen leaves
    its run to finish on its own, and a temporary thread left behind is deleted by the
    worker's housekeeping (`repo.expired_temporary_threads`).
    """
    tasks = list(_BACKGROUND)
    if not tasks:
        return 0
    _, pending = await asyncio.wait(tasks, timeout=timeout_s)
    for task in pending:
        task.cancel()
    if pending:
        log.warning("shutdown: %d background tasks did not end in time; cancelled", len(pending))
    return len(pending)
