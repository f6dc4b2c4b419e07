"""Starting `steward serve` and `langgraph dev` on the same graph, for the benchmarks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from mock_llm.process import free_port

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 120.0
STEWARD_RUN_SLOTS = 50
STEWARD_DB_POOL_MAX = 30


@dataclass
class Server:
    name: str
    base_url: str
    headers: dict[str, str]
    process: subprocess.Popen[bytes]
    log: Path
    startup_s: float


PASSED_THROUGH = (
    "STEWARD_RUN_DURABILITY",
    "STEWARD_RUN_SLOTS",
    "STEWARD_DB_POOL_MAX",
    "STEWARD_LOG_LEVEL",
)
"""Steward settings the bench passes on from its environment (e.g. to compare durabilities)."""


def base_env(db_url: str, home: Path, mock_url: str) -> dict[str, str]:
    """The environment both servers (and `steward keys create`) get."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "LANGGRAPH_", "OPENAI_", "STEWARD_"))
    }
    env.update(
        {
            "DATABASE_URL": db_url,
            "STEWARD_HOME": str(home),
            "OPENAI_BASE_URL": mock_url,
            "OPENAI_API_KEY": "bench",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "STEWARD_LOG_LEVEL": "WARNING",
            "STEWARD_BUDGET_USER_DAY_USD": "100000",
            "STEWARD_RATE_LIMIT_PER_MINUTE": "0",  # one bench key would hit the per-key limit
            "STEWARD_BUDGET_TENANT_MONTH_USD": "100000",
            "STEWARD_BUDGET_THREAD_USD": "100000",
            "STEWARD_DB_POOL_MAX": str(STEWARD_DB_POOL_MAX),
            "STEWARD_RUN_SLOTS": str(STEWARD_RUN_SLOTS),
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
        }
    )
    # Settings a comparison may vary, taken from the bench's own environment.
    env.update({k: os.environ[k] for k in PASSED_THROUGH if k in os.environ})
    return env


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM our child (its own process group), then SIGKILL the group if it lingers."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)  # start_new_session: pgid == our child's pid
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=5)


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{tail(log)}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} not ready within {STARTUP_TIMEOUT_S:.0f} s:\n{tail(log)}")


def tail(log: Path, lines: int = 40) -> str:
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def create_key(
    env: dict[str, str], user: str = "bench", role: str = "admin", tenant: str = "bench"
) -> str:
    """An API key made by `steward keys create` (which also migrates the database)."""
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "steward",
            "keys",
            "create",
            "--user",
            user,
            "--role",
            role,
            "--tenant",
            tenant,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.strip().splitlines()[-1].strip()


@contextlib.contextmanager
def running_server(
    name: str,
    env: dict[str, str],
    work: Path,
    api_key: str,
    langgraph_log_level: str,
    langgraph_jobs: int | None,
) -> Iterator[Server]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = work / f"{name}-{port}.log"
    if name == "steward":
        argv = [
            sys.executable,
            "-m",
            "steward",
            "serve",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ]
        cwd, ready, headers = ROOT, "/readyz", {"x-api-key": api_key}
    else:
        argv = [
            str(Path(sys.executable).parent / "langgraph"),
            "dev",
            "--no-browser",
            "--no-reload",
            "--port",
            str(port),
            "--server-log-level",
            langgraph_log_level,
        ]
        if langgraph_jobs is not None:
            argv += ["--n-jobs-per-worker", str(langgraph_jobs)]
        cwd, ready, headers = langgraph_dir(work), "/ok", {}
    t0 = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_ready(base_url + ready, process, log)
        yield Server(name, base_url, headers, process, log, time.perf_counter() - t0)
    finally:
        stop_process(process)


def langgraph_dir(work: Path) -> Path:
    """A directory `langgraph dev` can run in: langgraph.json plus links to the packages.

    langgraph dev resolves the graph path and dependencies against its cwd and keeps its
    in-memory state in `<cwd>/.langgraph_api/`; a fresh directory per start keeps that state
    empty (like Steward's fresh database) and the tree's own `.langgraph_api/` untouched.
    """
    target = Path(tempfile.mkdtemp(prefix="lgdev-", dir=work))
    (target / "langgraph.json").write_text((ROOT / "langgraph.json").read_text())
    for package in ("graph", "nodes", "steward", "server", "data"):
        (target / package).symlink_to(ROOT / package, target_is_directory=True)
    return target
