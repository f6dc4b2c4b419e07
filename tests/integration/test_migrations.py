"""Alembic migrations and the checkpoint tables on real Postgres."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import psycopg
import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from core.db.migrate import alembic_config, run_migrations, to_sqlalchemy_url
from core.db.pool import DbPool

pytestmark = pytest.mark.integration

TABLES = ("orders", "refunds")


def existing_tables(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
        ).fetchall()
    return {r[0] for r in rows}


def alembic_version(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        return sorted(r[0] for r in rows)


def fully_migrated(url: str) -> bool:
    """Every revision (features add their own branches off 0001) is applied."""
    script = ScriptDirectory.from_config(alembic_config())
    applied = {
        rev.revision for rev in script.iterate_revisions(tuple(alembic_version(url)), "base")
    }
    return applied == {rev.revision for rev in script.walk_revisions()}


def test_sqlalchemy_url_keeps_the_socket_host() -> None:
    assert (
        to_sqlalchemy_url("postgresql://postgres:@/postgres?host=/tmp/pg%20data")
        == "postgresql+psycopg://postgres:@/postgres?host=%2Ftmp%2Fpg+data"
    )
    assert (
        to_sqlalchemy_url("postgres://u:p%40ss@db:6543/app?sslmode=require")
        == "postgresql+psycopg://u:p%40ss@db:6543/app?sslmode=require"
    )
    with pytest.raises(ValueError, match="not a Postgres URL"):
        to_sqlalchemy_url("mysql://u@h/db")


def test_migrations_create_the_tables_and_are_idempotent(scratch_database_url: str) -> None:
    url = scratch_database_url
    assert not set(TABLES) & existing_tables(url)

    run_migrations(url)
    run_migrations(url)

    assert set(TABLES) <= existing_tables(url)
    assert fully_migrated(url)
    with psycopg.connect(url, autocommit=True) as conn:
        indexes = {
            r[0]
            for r in conn.execute(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'refunds'"
            ).fetchall()
        }
        assert "refunds_order_id_idx" in indexes
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(
                "INSERT INTO orders (order_id, customer_name, customer_email, status, total_cents)"
                " VALUES ('X-1', 'n', 'e', 'lost', 100)"
            )
        conn.execute(
            "INSERT INTO orders (order_id, customer_name, customer_email, status, total_cents)"
            " VALUES ('X-0', 'n', 'e', 'placed', 100)"
        )
        with pytest.raises(psycopg.errors.CheckViolation):  # nothing was captured
            conn.execute(
                "INSERT INTO refunds (order_id, amount_cents, currency, reason, idempotency_key,"
                " thread_id) VALUES ('X-0', 10, 'USD', 'r', 'key-0', 't')"
            )
        conn.execute(
            "INSERT INTO orders (order_id, customer_name, customer_email, status, total_cents)"
            " VALUES ('X-1', 'n', 'e', 'delivered', 100)"
        )
        insert_refund = (
            "INSERT INTO refunds (order_id, amount_cents, currency, reason, idempotency_key,"
            " thread_id) VALUES ('X-1', %s, 'USD', 'r', %s, 't')"
        )
        conn.execute(insert_refund, (10, "key-1"))
        with pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(insert_refund, (10, "key-1"))
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(insert_refund, (0, "key-2"))
        with pytest.raises(psycopg.errors.CheckViolation):  # unknown order: the trigger says so
            conn.execute(insert_refund.replace("'X-1'", "'X-2'"), (10, "key-3"))


def test_concurrent_migrations_do_not_race(scratch_database_url: str) -> None:
    # Separate processes, like replicas starting at once (Alembic's context is process-global).
    with ProcessPoolExecutor(max_workers=4, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_migrations, scratch_database_url) for _ in range(4)]
        for future in futures:
            future.result(timeout=120)
    assert fully_migrated(scratch_database_url)


def test_downgrade_drops_the_tables(scratch_database_url: str) -> None:
    url = scratch_database_url
    run_migrations(url)
    engine = create_engine(to_sqlalchemy_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            command.downgrade(alembic_config(conn), "base")
            conn.commit()
    finally:
        engine.dispose()
    assert not set(TABLES) & existing_tables(url)

    run_migrations(url)
    assert set(TABLES) <= existing_tables(url)


async def test_migrate_creates_the_checkpoint_tables(db_pool: DbPool) -> None:
    async with db_pool.connection() as conn:
        rows = await (
            await conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ).fetchall()
        versions = await (
            await conn.execute("SELECT count(*) AS n FROM checkpoint_migrations")
        ).fetchone()
    tables = {r["tablename"] for r in rows}
    assert {"checkpoints", "checkpoint_blobs", "checkpoint_writes", *TABLES} <= tables
    assert versions is not None
    assert versions["n"] > 0
