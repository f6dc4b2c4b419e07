"""Postgres fixtures (a pytest plugin: list it in the root conftest's `pytest_plugins`).

Each test session gets a fresh database `steward_test_<hex>` on the server named by
`STEWARD_TEST_PG` (default: libpq's defaults, `postgresql://$PGUSER@$PGHOST:$PGPORT/postgres`
with the current OS user, 127.0.0.1 and 5432 where those are unset), migrated once and dropped
at the end. `STEWARD_TEST_PG=embedded` uses a throwaway embedded PostgreSQL instead. A server
that cannot be reached fails the tests that need it with one message saying so.
"""

from __future__ import annotations

import getpass
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import pytest_asyncio
from psycopg import sql

from core.db.embedded import start_embedded, stop_embedded
from core.db.migrate import migrate, run_migrations
from core.db.pool import DbPool, open_pool
from core.domain.orders import PgOrderStore
from core.domain.seed import seed_demo_orders
from core.settings import Settings


def default_test_pg(environ: dict[str, str] | None = None) -> str:
    """The test server's URL when STEWARD_TEST_PG is unset: PG* variables, else local defaults."""
    env = os.environ if environ is None else environ
    user = env.get("PGUSER") or getpass.getuser()
    host = env.get("PGHOST") or "127.0.0.1"
    port = env.get("PGPORT") or "5432"
    database = env.get("PGDATABASE") or "postgres"
    shown_host = f"[{host}]" if ":" in host else host
    if host.startswith("/"):  # a Unix socket directory
        return f"postgresql://{user}@/{database}?host={host}&port={port}"
    return f"postgresql://{user}@{shown_host}:{port}/{database}"


def unreachable_message(url: str, exc: Exception) -> str:
    """What a test needing Postgres says when the test server cannot be reached."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return (
        f"cannot connect to the test PostgreSQL at {url} ({reason}). Start one there, point "
        "STEWARD_TEST_PG at a server where you may CREATE DATABASE, or set "
        "STEWARD_TEST_PG=embedded for a throwaway embedded PostgreSQL."
    )


def database_url_for(server_url: str, dbname: str) -> str:
    """Return `server_url` pointing at database `dbname` (query such as `host=` is kept)."""
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{dbname}"))


def create_database(server_url: str, prefix: str = "steward_test") -> str:
    """Create an empty database `<prefix>_<hex>` and return its URL."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return database_url_for(server_url, name)


def drop_database(server_url: str, url: str) -> None:
    """Terminate the connections to the database at `url`, then drop it."""
    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


@pytest.fixture(scope="session", name="pg_server_url")
def fx_pg_server_url() -> Iterator[str]:
    """URL of a maintenance database on the test server (where we may CREATE DATABASE)."""
    configured = os.environ.get("STEWARD_TEST_PG") or default_test_pg()
    if configured != "embedded":
        problem = None
        try:
            psycopg.connect(configured, autocommit=True, connect_timeout=10).close()
        except psycopg.OperationalError as exc:
            problem = unreachable_message(configured, exc)
        if problem is not None:  # outside the `except`: no chained psycopg traceback
            pytest.fail(problem, pytrace=False)
        yield configured
        return
    with tempfile.TemporaryDirectory(prefix="steward-test-pg-") as home:
        yield start_embedded(Path(home))
        stop_embedded(Path(home))


@pytest.fixture(scope="session", name="database_url")
def fx_database_url(pg_server_url: str) -> Iterator[str]:
    """A fresh, migrated database for this test session; dropped afterwards."""
    url = create_database(pg_server_url)
    try:
        run_migrations(url)
        yield url
    finally:
        drop_database(pg_server_url, url)


@pytest.fixture(name="scratch_database_url")
def fx_scratch_database_url(pg_server_url: str) -> Iterator[str]:
    """An empty, unmigrated database for one test; dropped afterwards."""
    url = create_database(pg_server_url, prefix="steward_scratch")
    try:
        yield url
    finally:
        drop_database(pg_server_url, url)


@pytest_asyncio.fixture(scope="session", loop_scope="session", name="db_pool")
async def fx_db_pool(database_url: str) -> AsyncIterator[DbPool]:
    """An open pool on the session database, with checkpoint tables and demo orders."""
    # Warm connections up front: the concurrency tests only race if callers really overlap.
    # Not more: two workers, their servers and these pools share one Postgres (100 clients).
    settings = Settings(database_url=database_url, db_pool_min=12, db_pool_max=12)
    async with open_pool(database_url, settings) as pool:
        await migrate(pool, database_url)
        await seed_demo_orders(pool)
        yield pool


@pytest_asyncio.fixture(loop_scope="session", name="orders")
async def fx_orders(db_pool: DbPool) -> PgOrderStore:
    """The order store, with the demo orders reset (no refunds) before each test."""
    await seed_demo_orders(db_pool, reset=True)
    return PgOrderStore(db_pool)
