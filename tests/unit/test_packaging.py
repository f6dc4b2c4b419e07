"""The image definition and langgraph.json stay valid."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    done = subprocess.run(
        [str(hadolint), str(ROOT / "Dockerfile")], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_langgraph_json_names_the_agent_graph() -> None:
    config = json.loads((ROOT / "langgraph.json").read_text())
    path, _, attr = config["graphs"]["agent"].partition(":")
    assert (ROOT / path).is_file() and attr == "graph"


def test_kubernetes_manifests_are_consistent() -> None:
    import yaml

    k8s = ROOT / "deploy" / "k8s"
    kustomization = yaml.safe_load((k8s / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert yaml.safe_load((k8s / resource).read_text())["kind"]
    deployment = yaml.safe_load((k8s / "deployment.yaml").read_text())
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "serve"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    config = yaml.safe_load((k8s / "configmap.yaml").read_text())["data"]
    assert config["STEWARD_ENV"] == "production"
    # The kubelet's SIGKILL comes after the whole drain (server/drain.py): the listener delay,
    # open connections, the runs' grace, and cancelling what is left.
    from server.drain import HTTP_SHUTDOWN_TIMEOUT_S

    drain_s = (
        float(config["STEWARD_SHUTDOWN_DELAY_S"])
        + HTTP_SHUTDOWN_TIMEOUT_S
        + float(config["STEWARD_RUN_SHUTDOWN_GRACE_S"])
        + 10
    )
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > drain_s
    assert "preStop" not in container.get("lifecycle", {}), "the process drains by itself"
