"""`steward ingest` adds and updates (documents of earlier ingests stay), `--replace` makes the
index exactly what it is given, and `make chat` keeps what the user ingested."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.e2e.make_helpers import ROOT, clean_env, require_installed_venv

STEWARD = Path(sys.executable).with_name("steward")


def documents(home: Path) -> set[str]:
    manifest = json.loads((home / "index" / "manifest.json").read_text(encoding="utf-8"))
    return set(manifest["documents"])


def ingest(home: Path, *args: str) -> str:
    done = subprocess.run(
        [str(STEWARD), "ingest", "--no-progress", *args],
        cwd=ROOT,
        env=clean_env(STEWARD_HOME=str(home)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_ingest_adds_then_replace_drops(steward_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(steward_home / "index", home / "index")  # the sample policies, indexed
    policies = documents(home)
    assert len(policies) > 20
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "warranty-extended.md").write_text(
        "# Extended warranty\n\nThree years on furniture.\n", encoding="utf-8"
    )

    out = ingest(home, str(mine))
    assert "1 added" in out and f"{len(policies)} kept" in out, out
    assert documents(home) == {*policies, "warranty-extended.md"}

    out = ingest(home)  # the default corpus again: the user's document stays
    assert f"{len(policies)} unchanged" in out and "1 kept" in out, out
    assert documents(home) == {*policies, "warranty-extended.md"}

    out = ingest(home, "--if-missing")
    assert "nothing to do" in out
    assert documents(home) == {*policies, "warranty-extended.md"}

    out = ingest(home, "--replace", str(mine))
    assert f"{len(policies)} removed" in out, out
    assert documents(home) == {"warranty-extended.md"}


def test_make_chat_keeps_the_users_documents(
    steward_home: Path, scratch_database_url: str, tmp_path: Path
) -> None:
    venv = require_installed_venv()
    home = tmp_path / "home"
    shutil.copytree(steward_home / "index", home / "index")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "warranty-extended.md").write_text("# Extended warranty\n\nThree years.\n", "utf-8")
    ingest(home, str(mine))
    before = documents(home)

    done = subprocess.run(
        ["make", "--no-print-directory", "chat", f"VENV={venv}"],
        cwd=ROOT,
        env=clean_env(STEWARD_HOME=str(home), DATABASE_URL=scratch_database_url),
        stdin=subprocess.DEVNULL,  # the conversation ends at once (end of input)
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "nothing to do" in done.stdout
    assert documents(home) == before
