"""The image definition and langgraph.json stay valid."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run([str(hadolint), str(ROOT / "Dockerfile")], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_langgraph_json_names_the_agent_graph() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text())
    path, _, attr = config["graphs"]["agent"].partition(":")
    assert (ROOT / path).is_file() and attr == "graph"
