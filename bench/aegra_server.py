"""Aegra (PyPI `aegra-api`, an open-source LangGraph Platform alternative) for the benches.

Aegra needs Python >= 3.12 and this project runs on 3.11, so it gets its own virtualenv,
`.cache/bench/aegra-venv` (git-ignored), made on first use with a Python 3.12 interpreter
(`--aegra-python`, else STEWARD_BENCH_PYTHON312, else `python3.12` on PATH, else the newest
~/.pyenv/versions/3.12.*). It holds `aegra-api==AEGRA_VERSION` and this project's runtime
dependencies (pyproject.toml's [project].dependencies, so the graph imports), not the project
itself: the graph's code comes from the tree, through a directory like `langgraph dev`'s
(langgraph.json plus links to the packages), which Aegra puts on sys.path from langgraph.json's
`"dependencies": ["."]`. The venv is remade when the Aegra version, the dependency list or the
interpreter change (a stamp file records them). On PyPI torch for Python 3.12 is the CUDA
build (the CPU-only wheel on this machine is for 3.11), so the first install downloads
several GB; the graph runs on CPU either way.

The server: `python -m uvicorn aegra_api.main:app --log-level warning --no-access-log` (what
`aegra serve` runs, minus its banner), Aegra's defaults otherwise: AUTH_TYPE=noop (no auth),
no Redis (runs are in-process asyncio tasks, no concurrency cap), migrations on startup,
pools SQLAlchemy 10+20 overflow and LangGraph 5..20. LOG_LEVEL=WARNING. Its database is its
own (`DATABASE_URL`; the graph's order store reads the same variable, but the bench's
questions never look an order up, so it is never opened).
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

from servers import ROOT, Server, stop_process, wait_ready

from mock_llm.process import free_port

AEGRA_VERSION = "0.11.0"
VENV_DIR = ROOT / ".cache" / "bench" / "aegra-venv"
STAMP = ".bench-stamp.json"
GRAPH_PACKAGES = ("core", "graph", "nodes", "steward", "server", "data")
INSTALL_TIMEOUT_S = 1800.0


class AegraUnavailable(RuntimeError):
    """Aegra cannot be installed or started here; the message says why."""


def find_python312(explicit: str | None = None) -> Path:
    candidates: list[str] = []
    if explicit:
        candidates.append(explicit)
    if env := os.environ.get("STEWARD_BENCH_PYTHON312"):
        candidates.append(env)
    if found := shutil.which("python3.12"):
        candidates.append(found)
    pyenv = sorted(
        glob.glob(str(Path.home() / ".pyenv" / "versions" / "3.12.*" / "bin" / "python3.12")),
        key=lambda p: [int(x) for x in Path(p).parents[1].name.split(".") if x.isdigit()],
    )
    candidates.extend(reversed(pyenv))
    for candidate in candidates:
        if is_python312(candidate):
            return Path(candidate)
    raise AegraUnavailable(
        "no Python 3.12 interpreter: pass --aegra-python or set STEWARD_BENCH_PYTHON312 "
        "(looked at python3.12 on PATH and ~/.pyenv/versions/3.12.*)"
    )


def is_python312(candidate: str) -> bool:
    """True if `candidate` runs and is CPython 3.12 (a pyenv shim may exist and fail)."""
    try:
        out = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2] == (3, 12))"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.stdout.strip() == "True"


TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"


def project_dependencies() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps: list[str] = pyproject["project"]["dependencies"]
    return deps


def ensure_venv(version: str, python: Path) -> Path:
    """Return the venv's python, (re)making the venv if its stamp does not match."""
    deps = project_dependencies()
    stamp = {
        "aegra_api": version,
        "python": str(python),
        "dependencies": hashlib.sha256("\n".join(deps).encode()).hexdigest()[:16],
    }
    venv_python = VENV_DIR / "bin" / "python"
    stamp_file = VENV_DIR / STAMP
    if venv_python.exists() and stamp_file.exists():
        with contextlib.suppress(ValueError):
            if json.loads(stamp_file.read_text()) == stamp:
                return venv_python
    print(
        f"making {VENV_DIR.relative_to(ROOT)} (aegra-api=={version} + the project's "
        f"dependencies, {python}); the first time takes minutes",
        flush=True,
    )
    t0 = time.perf_counter()
    VENV_DIR.parent.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            [str(python), "-m", "venv", "--clear", str(VENV_DIR)],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        )
        # CPU-only torch first, as `make install` and the Dockerfile do (no CUDA build); where
        # that index cannot be reached, the install below takes pip's configured one.
        torch = next((d for d in deps if d.replace(" ", "").startswith("torch==")), None)
        if torch is not None:
            cpu_first = ["--timeout", "20", "--retries", "1", "--index-url", TORCH_CPU_INDEX]
            subprocess.run(
                [str(venv_python), "-m", "pip", "install", "--quiet", *cpu_first, torch],
                check=False,
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT_S,
            )
        subprocess.run(
            [str(venv_python), "-m", "pip", "install", "--quiet", f"aegra-api=={version}", *deps],
            check=True,
            capture_output=True,
            text=True,
            timeout=INSTALL_TIMEOUT_S,
        )
    except subprocess.CalledProcessError as exc:
        raise AegraUnavailable(
            f"installing aegra-api=={version} failed ({' '.join(exc.cmd[:4])} ...):\n"
            f"{(exc.stderr or '')[-3000:]}"
        ) from exc
    except subprocess.TimeoutExpired as exc:
        raise AegraUnavailable(f"installing aegra-api timed out after {exc.timeout:.0f} s") from exc
    stamp_file.write_text(json.dumps(stamp))
    print(f"aegra venv ready in {time.perf_counter() - t0:.0f}s", flush=True)
    return venv_python


def installed_version(venv_python: Path) -> str:
    out = subprocess.run(
        [str(venv_python), "-c", "import importlib.metadata as m; print(m.version('aegra-api'))"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.stdout.strip()


def aegra_dir(work: Path) -> Path:
    """langgraph.json plus links to the graph's packages (like servers.langgraph_dir)."""
    target = Path(tempfile.mkdtemp(prefix="aegra-", dir=work))
    (target / "langgraph.json").write_text((ROOT / "langgraph.json").read_text())
    for package in GRAPH_PACKAGES:
        (target / package).symlink_to(ROOT / package, target_is_directory=True)
    return target


def aegra_env(env: dict[str, str], database_url: str, config: Path) -> dict[str, str]:
    """The servers' common environment, with Aegra's database and settings."""
    return {
        **env,
        "DATABASE_URL": database_url,
        "AEGRA_CONFIG": str(config),
        "AUTH_TYPE": "noop",
        "LOG_LEVEL": "WARNING",
        "ENV_MODE": "LOCAL",
        "PYTHONUNBUFFERED": "1",
    }


@contextlib.contextmanager
def running_aegra(
    venv_python: Path, env: dict[str, str], database_url: str, work: Path
) -> Iterator[Server]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = work / f"aegra-{port}.log"
    cwd = aegra_dir(work)
    argv = [
        str(venv_python),
        "-m",
        "uvicorn",
        "aegra_api.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    t0 = time.perf_counter()
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=aegra_env(env, database_url, cwd / "langgraph.json"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(base_url + "/health", process, log)
        yield Server("aegra", base_url, {}, process, log, time.perf_counter() - t0)
    finally:
        stop_process(process)
