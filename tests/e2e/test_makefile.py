"""The Makefile: every target it declares has a recipe and a line in `make help`."""

from __future__ import annotations

import re
import subprocess

from tests.e2e.make_helpers import ROOT


def phony_targets() -> list[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^\.PHONY:(.*)$", text, re.MULTILINE)
    assert match
    return match.group(1).split()


def test_every_declared_target_has_a_recipe_and_help() -> None:
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    helped = {line.split()[0] for line in shown.splitlines() if line.strip()}
    for target in phony_targets():
        assert target in helped, f"`make help` does not list {target}"
        # -n prints the commands without running them, -B as if everything were out of date;
        # a target without a recipe or prerequisites says "Nothing to be done".
        dry = subprocess.run(
            ["make", "--no-print-directory", "-n", "-B", target],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert dry.returncode == 0, (target, dry.stderr)
        assert "Nothing to be done" not in dry.stdout + dry.stderr, target
        assert dry.stdout.strip(), f"make {target} runs nothing"


def test_run_takes_port_and_host_from_the_command_line_only() -> None:
    def dry_run(*args: str, env: dict[str, str] | None = None) -> str:
        out = subprocess.run(
            ["make", "--no-print-directory", "-n", "run", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env=env,
        ).stdout
        return out.strip().splitlines()[-1]

    import os

    assert dry_run().endswith("steward serve --host 127.0.0.1 --port 8080")
    assert dry_run("PORT=8123", "HOST=0.0.0.0").endswith("steward serve --host 0.0.0.0 --port 8123")
    # A shell's unrelated HOST/PORT variables do not move the service.
    env = {**os.environ, "HOST": "some-host", "PORT": "1"}
    assert dry_run(env=env).endswith("steward serve --host 127.0.0.1 --port 8080")
