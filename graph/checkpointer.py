"""The Postgres checkpointer, on our own pool, with strict (pickle-free) serialization."""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.checkpoint.serde.jsonplus import JsonPlusSerializer
from psycopg_pool import AsyncConnectionPool


def strict_serializer() -> JsonPlusSerializer:
    """Msgpack limited to LangGraph's safe types; never pickle (no RCE from the database)."""
    return JsonPlusSerializer(pickle_fallback=False, allowed_msgpack_modules=None)


def make_checkpointer(pool: AsyncConnectionPool[Any]) -> AsyncPostgresSaver:
    """Return an AsyncPostgresSaver on `pool` (autocommit, dict rows; see steward.db.pool)."""
    return AsyncPostgresSaver(pool, serde=strict_serializer())
