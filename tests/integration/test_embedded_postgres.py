"""The embedded PostgreSQL used when DATABASE_URL is unset."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from core.db.embedded import HANDLE_FILE, pgdata_dir, resolve_database_url, stop_embedded
from core.settings import Settings
from mock_llm.process import MockLLM
from tests.serve_helpers import Served, service_env, start_serve, wait_exit

pytestmark = pytest.mark.integration

EMBEDDED_START_S = 300.0
"""initdb, migrations and loading the index on a loaded 2-core box take well over a minute."""


def test_embedded_postgres_starts_and_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(home=tmp_path / "home", database_url=None)
    caplog.set_level(logging.INFO, logger="core.db.embedded")
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
    caplog.set_level(logging.INFO, logger="core.db.embedded")
    url = "postgresql://app:secret@db.internal:5432/steward"
    settings = Settings(home=tmp_path, database_url=url)

    assert resolve_database_url(settings) == url
    assert not (tmp_path / "pgdata").exists()
    assert "DATABASE_URL" in caplog.text
    assert "secret" not in caplog.text


# -- `steward serve` owns its embedded Postgres: stopped on SIGTERM/SIGINT, stale pids or not


def postmaster_pid(pgdata: Path) -> int | None:
    """The postmaster's pid from `postmaster.pid`, or None when the file is gone."""
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except FileNotFoundError:
        return None


def process_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen(["true"])  # coreutils' true
    proc.wait()
    assert not process_alive(proc.pid)
    return proc.pid


@pytest.fixture(name="embedded_env")
def fx_embedded_env(
    tmp_path: Path, steward_home: Path, mock_llm: MockLLM
) -> Iterator[tuple[dict[str, str], Path]]:
    """Env for `steward serve` on embedded defaults (no DATABASE_URL) in a temp STEWARD_HOME.

    The home gets a copy of the session's index so the server starts without ingesting.
    Whatever a test leaves running of the embedded Postgres is stopped afterwards.
    """
    home = tmp_path / "home"
    shutil.copytree(steward_home / "index", home / "index")
    env = service_env(
        STEWARD_HOME=str(home),
        OPENAI_BASE_URL=mock_llm.base_url,
        OPENAI_API_KEY="test-key",
        STEWARD_SHUTDOWN_DELAY_S="0.5",
        STEWARD_RUN_SHUTDOWN_GRACE_S="1",
    )
    assert "DATABASE_URL" not in env
    pgdata = pgdata_dir(home)
    try:
        yield env, pgdata
    finally:
        pid = postmaster_pid(pgdata)
        if pid is not None and process_alive(pid):
            os.kill(pid, signal.SIGINT)  # postgres: fast shutdown
            deadline = time.monotonic() + 30
            while process_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.1)


def handles(pgdata: Path) -> list[int]:
    path = pgdata / HANDLE_FILE
    return list(json.loads(path.read_text() or "[]")) if path.exists() else []


async def stop_and_check_postgres_is_gone(
    served: Served, sig: signal.Signals, pgdata: Path, postmaster: int
) -> None:
    served.process.send_signal(sig)
    code = await wait_exit(served.process, 90)
    assert code is not None, f"steward serve still runs after {sig.name}:\n{served.log()[-4000:]}"
    assert code == 0, served.log()[-4000:]
    assert not process_alive(postmaster), (
        f"the embedded postmaster {postmaster} outlived steward serve ({sig.name}):\n"
        f"{served.log()[-4000:]}"
    )
    assert postmaster_pid(pgdata) is None, "postmaster.pid is left behind"
    assert served.process.pid not in handles(pgdata)


async def test_sigterm_to_serve_stops_its_embedded_postgres(
    embedded_env: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, pgdata = embedded_env
    served = start_serve(env, tmp_path / "serve.log", ready_within=EMBEDDED_START_S)
    try:
        postmaster = postmaster_pid(pgdata)
        assert postmaster is not None and process_alive(postmaster)
        assert served.process.pid in handles(pgdata)
        await stop_and_check_postgres_is_gone(served, signal.SIGTERM, pgdata, postmaster)
    finally:
        served.stop()


async def test_stale_pids_in_the_handle_file_never_keep_serve_from_stopping_postgres(
    embedded_env: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, pgdata = embedded_env
    # A server killed without its clean-up leaves the postmaster running and its pid behind.
    first = start_serve(env, tmp_path / "first.log", ready_within=EMBEDDED_START_S)
    try:
        first.process.kill()
        first.process.wait(timeout=30)
    finally:
        first.stop()
    postmaster = postmaster_pid(pgdata)
    assert postmaster is not None and process_alive(postmaster)
    assert first.process.pid in handles(pgdata)
    # ... and one more dead pid, written by hand.
    stale = [*handles(pgdata), dead_pid()]
    (pgdata / HANDLE_FILE).write_text(json.dumps(stale))

    second = start_serve(env, tmp_path / "second.log", ready_within=EMBEDDED_START_S)
    try:
        assert "attaching to the embedded PostgreSQL" in second.log()
        assert postmaster_pid(pgdata) == postmaster
        assert handles(pgdata) == [second.process.pid], "the dead pids were not dropped"
        await stop_and_check_postgres_is_gone(second, signal.SIGINT, pgdata, postmaster)
    finally:
        second.stop()
