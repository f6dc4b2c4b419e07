"""Schema migrations: Alembic revisions (raw SQL) for our tables, then the checkpoint tables.

Both steps hold a Postgres advisory lock, so several replicas starting at once run them one
after another instead of racing on `CREATE TABLE`.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from psycopg import AsyncConnection

from core.db.embedded import redact_url

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

    from core.db.pool import DbPool

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
"""Alembic `script_location` (env.py, script.py.mako, versions/)."""

MIGRATION_LOCK_KEY = 7_301_559_001
"""`pg_advisory_lock` key held while Alembic upgrades the schema."""
CHECKPOINT_SETUP_LOCK_KEY = 7_301_559_002
"""`pg_advisory_lock` key held while `AsyncPostgresSaver.setup()` runs."""


def to_sqlalchemy_url(url: str) -> str:
    """Turn a `postgresql://` (or `postgres://`) URL into SQLAlchemy's `postgresql+psycopg://`.

    Query parameters such as `host=/socket/dir` or `sslmode=require` are kept.

    Raises:
        ValueError: `url` is not a Postgres URL (libpq `key=value` strings are not supported).
    """
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"not a Postgres URL: {redact_url(url)}") from exc
    if parsed.drivername.split("+", 1)[0] not in ("postgresql", "postgres"):
        raise ValueError(f"not a Postgres URL: {redact_url(url)}")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def alembic_config(connection: Connection | None = None) -> Config:
    """Build the Alembic configuration in code (no alembic.ini needed).

    Args:
        connection: an open SQLAlchemy connection that env.py should migrate on.
    """
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def run_migrations(url: str) -> None:
    """Upgrade the database to the newest Alembic revision (blocking; safe to run concurrently).

    Holds `pg_advisory_lock(MIGRATION_LOCK_KEY)` on the migrating connection; if the process
    dies, closing the connection releases the lock.
    """
    from alembic import command
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(to_sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            logger.info("migrations: waiting for the migration lock on %s", redact_url(url))
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()
            command.upgrade(alembic_config(conn), "heads")
            conn.commit()
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
            conn.commit()
            logger.info("migrations: schema is at all heads")
    finally:
        engine.dispose()


async def migrate(pool: DbPool, url: str) -> None:
    """Run our Alembic migrations, then create or upgrade LangGraph's checkpoint tables.

    Args:
        pool: the open service pool, used by `AsyncPostgresSaver.setup()`.
        url: the same database, for the migration and lock connections.
    """
    from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver

    await asyncio.to_thread(run_migrations, url)
    # A dedicated connection holds the lock (so a pool of size 1 cannot deadlock on itself);
    # closing it releases the lock.
    async with await AsyncConnection.connect(url, autocommit=True) as lock_conn:
        await lock_conn.execute("SELECT pg_advisory_lock(%s)", (CHECKPOINT_SETUP_LOCK_KEY,))
        await AsyncPostgresSaver(pool).setup()
    logger.info("migrations: checkpoint tables are ready")


__all__ = [
    "CHECKPOINT_SETUP_LOCK_KEY",
    "MIGRATIONS_DIR",
    "MIGRATION_LOCK_KEY",
    "alembic_config",
    "migrate",
    "run_migrations",
    "to_sqlalchemy_url",
]
