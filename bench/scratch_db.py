"""A throwaway database for one benchmark run, dropped afterwards."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg

DEFAULT_ADMIN_URL = "postgresql://root@127.0.0.1:5432/postgres"


@asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    """Create `steward_bench_<hex>` on STEWARD_BENCH_PG's server; yield its URL; drop it."""
    admin_url = os.environ.get("STEWARD_BENCH_PG", DEFAULT_ADMIN_URL)
    name = f"steward_bench_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{admin_url.rsplit('/', 1)[0]}/{name}"
    finally:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
