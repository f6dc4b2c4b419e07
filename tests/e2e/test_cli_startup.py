"""The `steward` command's start-up, run as a user runs it (a subprocess of the console script).

Bad settings, a port in use, production without a provider or without keys: each ends the
command with one line naming what is wrong (exit code 2, or uvicorn's 3 for a failed
start-up), never a traceback, and `steward serve` says so before any start-up work (no index
is built, no embedded Postgres started).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEWARD = Path(sys.executable).with_name("steward")
COMMANDS = [
    ["serve"],
    ["ingest"],
    ["seed"],
    ["migrate"],
    ["chat"],
    ["keys", "list"],
    ["keys", "create", "--user", "u", "--role", "user"],
    ["eval", "--mock"],
    ["mock-llm"],
]


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment without any of our settings, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("STEWARD_", "OPENAI_")) and k != "DATABASE_URL"
    }
    return {**env, "STEWARD_HOME": str(home), "HF_HUB_OFFLINE": "1", **extra}


def steward(
    args: list[str], env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(STEWARD), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
@pytest.mark.parametrize(
    ("variable", "value", "accepted"),
    [
        ("STEWARD_DB_PREPARE_THRESHOLD", "abc", "an integer >= 0, or empty or `none`"),
        ("STEWARD_ENV", "prod", "`development` or `production`"),
        ("STEWARD_ROLE_TOOLS", "{oops", "a JSON object"),
    ],
)
def test_bad_setting_is_one_line_from_every_command(
    command: list[str], variable: str, value: str, accepted: str, tmp_path: Path
) -> None:
    done = steward(command, clean_env(tmp_path, **{variable: value}), timeout=60)
    assert done.returncode == 2, done
    [line] = done.stderr.splitlines()
    assert line.startswith(f"steward: error: invalid {variable}={value!r}: "), line
    assert f"expected {accepted}" in line
    assert "Traceback" not in done.stderr + done.stdout
    assert not (tmp_path / "pgdata").exists()


def test_empty_prepare_threshold_works_against_postgres(
    scratch_database_url: str, tmp_path: Path
) -> None:
    env = clean_env(tmp_path, DATABASE_URL=scratch_database_url, STEWARD_DB_PREPARE_THRESHOLD="")
    done = steward(["migrate"], env)
    assert done.returncode == 0, done.stderr
    assert "database schema is up to date" in done.stdout


def test_port_in_use_fails_before_any_start_up_work(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = steward(["serve", "--port", str(port)], clean_env(tmp_path))
    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [
        f"steward: error: port {port} on 127.0.0.1 is already in use (another `steward serve`?):"
        " choose another with `--port N` (`make run PORT=N`)"
    ], done.stderr
    assert not (tmp_path / "index").exists()  # no indexing, no seeding, no embedded Postgres
    assert not (tmp_path / "pgdata").exists()


def test_production_without_a_provider_is_one_line(tmp_path: Path) -> None:
    done = steward(["serve", "--port", "0"], clean_env(tmp_path, STEWARD_ENV="production"))
    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [
        "steward: error: STEWARD_ENV=production needs an LLM provider: set OPENAI_API_KEY (and "
        "OPENAI_BASE_URL for a provider other than OpenAI); the offline demo model is for "
        "development only"
    ]
    assert not (tmp_path / "pgdata").exists()


def test_production_without_keys_fails_start_up_in_one_line(
    scratch_database_url: str, steward_home: Path, tmp_path: Path
) -> None:
    """A failure inside the app's start-up (no API key in production) is one line too."""
    env = clean_env(
        steward_home,  # the session's index, read only
        STEWARD_ENV="production",
        DATABASE_URL=scratch_database_url,
        OPENAI_BASE_URL="http://127.0.0.1:9/v1",
    )
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    done = steward(["serve", "--port", str(port)], env)
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert "start-up failed: no API key exists: create one with `steward keys create` first" in (
        output
    )
    assert "Traceback" not in output
