"""The Postgres checkpointer, on our own pool, pickle-free and with PII redacted on write."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg_pool import AsyncConnectionPool

from core.guardrails.serde import RedactingSerializer


def make_checkpointer(pool: AsyncConnectionPool[Any]) -> AsyncPostgresSaver:
    """Return an AsyncPostgresSaver on `pool` (autocommit, dict rows; see core.db.pool).

    The serializer is strict msgpack (LangGraph's safe types only, never pickle) and redacts
    user text before it is stored: LangGraph persists a run's input before input_filter runs.
    """
    return AsyncPostgresSaver(pool, serde=RedactingSerializer())
