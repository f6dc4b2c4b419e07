"""`make test`'s eval gate, on a throwaway database and home: the user's `./.steward` is never used.

Runs `steward eval --mock --compare evals/baseline.json` as a subprocess with `STEWARD_HOME`
in a temporary folder and `DATABASE_URL` on a scratch database of the test server
(`STEWARD_TEST_PG`, as the test suite; `embedded` gives the eval its own embedded Postgres in
the temporary home), then checks that `./.steward` is exactly as it was before.

Usage: `python -m tests.run_eval_gate [extra steward eval arguments]`; exit code is the eval's,
or 3 when `./.steward` changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg

from tests.fixtures_db import create_database, default_test_pg, drop_database, unreachable_message

ROOT = Path(__file__).resolve().parent.parent
USER_HOME = ROOT / ".steward"


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folder` with its size and modification time (empty if missing)."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def main(argv: list[str]) -> int:
    """Run the gate; see the module docstring."""
    before = snapshot(USER_HOME)
    server = os.environ.get("STEWARD_TEST_PG") or default_test_pg()
    try:
        scratch = None if server == "embedded" else create_database(server, prefix="steward_eval")
    except psycopg.OperationalError as exc:
        print(f"eval gate: {unreachable_message(server, exc)}", file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory(prefix="steward-eval-home-") as home:
            env = {**os.environ, "STEWARD_HOME": home}
            if scratch is not None:
                env["DATABASE_URL"] = scratch
            else:
                env.pop("DATABASE_URL", None)
            command = [
                sys.executable,
                "-m",
                "steward",
                "eval",
                "--mock",
                "--compare",
                str(ROOT / "evals" / "baseline.json"),
                *argv,
            ]
            code = subprocess.call(command, cwd=ROOT, env=env)
    finally:
        if scratch is not None:
            drop_database(server, scratch)
    if snapshot(USER_HOME) != before:
        print(
            f"the eval gate changed {USER_HOME}: it must use throwaway data only", file=sys.stderr
        )
        return 3
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
