"""The embedded PostgreSQL used when DATABASE_URL is unset."""

from __future__ import annotations

import logging
from pathlib import Path

import psycopg
import pytest

from steward.db.embedded import pgdata_dir, resolve_database_url, stop_embedded
from steward.settings import Settings

pytestmark = pytest.mark.integration


def test_embedded_postgres_starts_and_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path / "home", database_url=None)
    caplog.set_level(logging.INFO, logger="steward.db.embedded")
    try:
        url = resolve_database_url(settings)
        assert "embedded PostgreSQL" in caplog.text
        assert (pgdata_dir(settings.home) / "PG_VERSION").exists()
        with psycopg.connect(url) as conn:
            row = conn.execute("select 1").fetchone()
        assert row == (1,)
        # A second call in the same process reuses the running server.
        assert resolve_database_url(settings) == url
    finally:
        stop_embedded(settings.home)
    # No other process used it, so releasing our handle stopped it.
    assert not (pgdata_dir(settings.home) / "postmaster.pid").exists()


def test_database_url_wins_over_embedded(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="steward.db.embedded")
    url = "postgresql://app:secret@db.internal:5432/steward"
    settings = Settings(home=tmp_path, database_url=url)

    assert resolve_database_url(settings) == url
    assert not (tmp_path / "pgdata").exists()
    assert "DATABASE_URL" in caplog.text
    assert "secret" not in caplog.text
