"""The checkpointer-less workflow that langgraph.json names `agent` (langgraph dev, Studio).

`langgraph dev` persists state itself and runs no lifespan, so the index and the order store
open lazily on first use. The Steward service builds its own graph with the Postgres
checkpointer (`steward.runtime.open_runtime`).
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from psycopg_pool import AsyncConnectionPool

from core.domain.types import OrderStore, OrderView, RefundRequest, RefundResult
from core.knowledge.types import RetrievedChunk, Retriever
from core.settings import Settings, get_settings
from graph.builder import make_graph
from graph.deps import Deps
from steward.models import make_chat_model


class LazyRetriever:
    """Loads the FAISS index on first use, so importing the graph touches no files."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._inner: Retriever | None = None
        self._lock = asyncio.Lock()

    async def search(self, query: str, *, k: int) -> list[RetrievedChunk]:
        """Search the index, loading it (off the event loop) the first time."""
        if self._inner is None:
            async with self._lock:
                if self._inner is None:
                    from core.knowledge.retriever import load_retriever

                    self._inner = await asyncio.to_thread(load_retriever, self._settings)
        return await self._inner.search(query, k=k)


class LazyOrderStore:
    """Opens a pool on first use; for `langgraph dev`, where no server lifespan exists."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._inner: OrderStore | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._lock = asyncio.Lock()

    async def _store(self) -> OrderStore:
        if self._inner is None:
            async with self._lock:
                if self._inner is None:
                    from core.db.embedded import resolve_database_url
                    from core.db.migrate import migrate
                    from core.db.pool import create_pool
                    from core.domain.orders import PgOrderStore

                    url = await asyncio.to_thread(resolve_database_url, self._settings)
                    pool = create_pool(url, self._settings)
                    await pool.open(wait=True)
                    await migrate(pool, url)
                    store = PgOrderStore(pool)
                    await store.set_approval_threshold(self._settings.refund_approval_threshold)
                    self._pool = pool
                    self._inner = store
        return self._inner

    async def get_order(self, order_id: str) -> OrderView | None:
        """Delegate to the Postgres store."""
        return await (await self._store()).get_order(order_id)

    async def split_reason(self, order_id: str, amount: Decimal | str) -> str | None:
        """Delegate to the Postgres store."""
        return await (await self._store()).split_reason(order_id, amount)

    async def issue_refund(self, request: RefundRequest) -> RefundResult:
        """Delegate to the Postgres store."""
        return await (await self._store()).issue_refund(request)


def default_deps(settings: Settings | None = None) -> Deps:
    """Build lazily-initialised dependencies from settings (used by `langgraph dev`)."""
    settings = settings or get_settings()
    return Deps(
        chat_model=make_chat_model(settings),
        retriever=LazyRetriever(settings),
        orders=LazyOrderStore(settings),
        settings=settings,
    )


graph = make_graph(deps=default_deps())
