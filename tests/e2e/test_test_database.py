"""The test suite's own database: libpq-style defaults, and one clear message when unreachable."""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import sys
from pathlib import Path

from tests.fixtures_db import default_test_pg

ROOT = Path(__file__).resolve().parents[2]


def test_default_is_the_current_user_on_the_local_server() -> None:
    assert default_test_pg({}) == f"postgresql://{getpass.getuser()}@127.0.0.1:5432/postgres"


def test_default_follows_libpq_variables() -> None:
    env = {"PGUSER": "ci", "PGHOST": "db.internal", "PGPORT": "6543", "PGDATABASE": "maint"}
    assert default_test_pg(env) == "postgresql://ci@db.internal:6543/maint"
    assert default_test_pg({"PGUSER": "me", "PGHOST": "/run/postgresql"}) == (
        "postgresql://me@/postgres?host=/run/postgresql&port=5432"
    )


def test_unreachable_server_names_steward_test_pg_and_embedded(tmp_path: Path) -> None:
    """A pytest run against a closed port fails with the hint, not a bare 'connection refused'."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends: nothing listens there
    url = f"postgresql://nobody@127.0.0.1:{port}/postgres"
    env = {**os.environ, "STEWARD_TEST_PG": url}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/integration/test_orders.py",
            "-x",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode != 0, done.stdout
    assert f"cannot connect to the test PostgreSQL at {url}" in done.stdout, done.stdout[-3000:]
    assert "STEWARD_TEST_PG=embedded" in done.stdout
    assert "Traceback" not in done.stdout
