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
