"""The README's Quick start, as a new user runs it: a fresh `git clone`, `make run`, then the
README's Python example saved as a script and run against it.

What is reused: the installed virtualenv (`make run VENV=...`: the Makefile's install stamp is
keyed by pyproject.toml's content, so the clone's identical pyproject finds it installed), with
`PYTHONPATH` at the clone so the clone's code runs, not this checkout's. Everything else is the
clone's own: its README, Makefile, sample policies and `./.steward` (embedded Postgres, index,
development key). The clone is of this repository's HEAD: commit before running it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.make_helpers import ROOT, clean_env, require_installed_venv
from tests.fixtures_server import free_port

READY_TIMEOUT_S = 900.0
"""First start: index the policies, start Postgres, migrate, seed, load models (2 busy cores)."""

LIBRARY_NOISE = ("[alembic", "[presidio-analyzer]", "[uvicorn.error]", "Loading weights")


def readme_python_example(readme: str) -> str:
    """The first ```python block of the README's Quick start section."""
    section = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the Quick start has no ```python block"
    return match.group(1)


def readme_first_command(readme: str) -> str:
    section = readme.split("## Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert block
    return block.group(1).splitlines()[0].split("#")[0].strip()


@pytest.fixture(name="clone")
def fx_clone(tmp_path: Path) -> Path:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=120)
    return clone


def _stop(proc: subprocess.Popen[bytes], clone: Path) -> None:
    """SIGINT to `make run`'s process group (as Ctrl+C does); SIGKILL if it does not end."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
    pid_file = clone / ".steward" / "pgdata" / "postmaster.pid"
    if pid_file.exists():  # the embedded Postgres this test started, if serve left it behind
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)


@pytest.fixture(name="make_run")
def fx_make_run(clone: Path, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    venv = require_installed_venv(clone / "pyproject.toml")
    command = readme_first_command((clone / "README.md").read_text(encoding="utf-8"))
    assert command == "make run", command
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "make-run.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["make", "--no-print-directory", "run", f"PORT={port}", f"VENV={venv}"],
            cwd=clone,
            env=clean_env(PYTHONPATH=str(clone), PYTHONUNBUFFERED="1"),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = started + READY_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"make run exited with {proc.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                output = log_path.read_text()
                pytest.fail(f"make run not ready after {READY_TIMEOUT_S:.0f}s:\n{output}")
            time.sleep(1)
        print(f"make run answered /readyz after {time.monotonic() - started:.0f}s")
        yield url, log_path
    finally:
        _stop(proc, clone)


def test_readme_quick_start_in_a_fresh_clone(make_run: tuple[str, Path], clone: Path) -> None:
    url, log_path = make_run
    readme = (clone / "README.md").read_text(encoding="utf-8")
    script = clone / "quickstart.py"
    script.write_text(readme_python_example(readme), encoding="utf-8")

    # As the README says: in the checkout, `.venv/bin/python quickstart.py`, STEWARD_URL for
    # another port.
    done = subprocess.run(
        [sys.executable, script.name],
        cwd=clone,
        env=clean_env(STEWARD_URL=url, PYTHONPATH=str(clone)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "waiting for approval: issue_refund(order_id=LS-10007, amount=700" in done.stdout
    assert "pending approval:" in done.stdout

    # The documented outcome, checked apart from what the script prints.
    key = (clone / ".steward" / "dev-api-key").read_text().strip()
    approvals = httpx.get(
        f"{url}/approvals", params={"status": "pending"}, headers={"x-api-key": key}, timeout=30
    ).json()
    held = [a for a in approvals if "LS-10007" in json.dumps(a)]
    assert len(held) == 1, approvals
    assert held[0]["status"] == "pending"
    printed_id = done.stdout.split("pending approval:", 1)[1].split()[0]
    assert printed_id == held[0]["approval_id"]

    # A quiet start: our own lines, none of the libraries' INFO chatter.
    log = log_path.read_text(errors="replace")
    assert f"listening on http://127.0.0.1:{url.rsplit(':', 1)[1]}" in log, log
    assert "steward service ready (development)" in log
    noisy = [line for line in log.splitlines() if any(n in line for n in LIBRARY_NOISE)]
    assert not noisy, "\n".join(noisy)
