"""Assemble a ready-to-run workflow: database, migrations, index, model, checkpointer, graph."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from core.budget.ledger import PgUsageLedger
from core.db.embedded import resolve_database_url
from core.db.migrate import migrate
from core.db.outage import through_outages
from core.db.pool import open_pool
from core.domain.orders import PgOrderStore
from core.guardrails.serde import warm_up as warm_up_redaction
from core.knowledge.retriever import load_retriever
from core.observability.metrics import observe_pool
from core.settings import Settings
from graph.builder import make_graph
from graph.checkpointer import make_checkpointer
from graph.deps import Deps
from graph.runtime import Runtime
from steward.models import make_chat_model

log = logging.getLogger(__name__)


@asynccontextmanager
async def open_runtime(settings: Settings, **overrides: Any) -> AsyncIterator[Runtime]:
    """Open the pool, migrate, load the index and compile the graph; close it all on exit.

    `overrides` replace single dependencies (e.g. `chat_model=` in tests).
    """
    url = await asyncio.to_thread(resolve_database_url, settings)
    async with open_pool(url, settings) as pool:
        wait = settings.db_startup_timeout_s
        await through_outages(lambda: migrate(pool, url), what="migrations", timeout_s=wait)
        # The database enforces the threshold; the service only tells it which one.
        await through_outages(
            lambda: PgOrderStore(pool).set_approval_threshold(settings.refund_approval_threshold),
            what="the approval threshold",
            timeout_s=wait,
        )
        retriever = overrides.pop("retriever", None) or await asyncio.to_thread(
            load_retriever, settings
        )
        chat_model = overrides.pop("chat_model", None) or make_chat_model(settings)
        overrides.setdefault("usage_ledger", PgUsageLedger(pool, settings))
        deps = Deps(
            chat_model=chat_model,
            retriever=retriever,
            orders=PgOrderStore(pool),
            settings=settings,
            **overrides,
        )
        await warm_up_redaction()  # load Presidio off the event loop before any checkpoint
        checkpointer = make_checkpointer(pool)
        stop_observing = observe_pool(pool)
        try:
            yield Runtime(
                graph=make_graph(checkpointer, deps=deps),
                deps=deps,
                pool=pool,
                checkpointer=checkpointer,
                database_url=url,
            )
        finally:
            stop_observing()


__all__ = ["open_runtime"]
