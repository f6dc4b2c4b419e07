"""Concurrent retrieval queries embedded together: one forward pass for all that wait.

At 20 concurrent runs, each query's embedding used to be its own forward pass behind one lock,
so queries queued and paid one pass each. Queries that arrive while a pass runs now wait for
the next pass and share it: the cost per query falls with load, and a lone query pays what it
paid before (no waiting window).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

Q = TypeVar("Q")
R = TypeVar("R")

MAX_BATCH = 32
"""Most queries one pass takes (the rest take the next one)."""


class _Lane(Generic[Q, R]):
    """The queries of one event loop and the task that drains them."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Q, asyncio.Future[R]]] = []
        self.task: asyncio.Task[None] | None = None


class Batcher(Generic[Q, R]):
    """Runs `work(queries)` in a thread for every query waiting at once.

    Args:
        work: blocking; returns one result per query, in order.
        max_batch: most queries one call takes.
    """

    def __init__(self, work: Callable[[list[Q]], list[R]], *, max_batch: int = MAX_BATCH) -> None:
        self._work = work
        self._max_batch = max_batch
        self._lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Lane[Q, R]] = (
            weakref.WeakKeyDictionary()
        )

    async def submit(self, query: Q) -> R:
        """The result for `query`, computed with whatever else waits."""
        loop = asyncio.get_running_loop()
        lane = self._lanes.get(loop)
        if lane is None:
            lane = self._lanes[loop] = _Lane()
        future: asyncio.Future[R] = loop.create_future()
        lane.waiting.append((query, future))
        if lane.task is None or lane.task.done():
            lane.task = loop.create_task(self._drain(lane), name="steward-query-batch")
        return await future

    async def _drain(self, lane: _Lane[Q, R]) -> None:
        while lane.waiting:
            batch = lane.waiting[: self._max_batch]
            del lane.waiting[: self._max_batch]
            live = [(q, f) for q, f in batch if not f.cancelled()]
            if not live:
                continue
            try:
                results = await asyncio.to_thread(self._work, [q for q, _ in live])
            except Exception as exc:  # noqa: BLE001 - every waiter gets the failure
                for _, future in live:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(live, results, strict=True):
                if not future.done():
                    future.set_result(result)
