"""A throwaway PostgreSQL cluster (initdb + pg_ctl) that a test may stop and restart at will.

The machine's shared server must never be restarted, so the chaos test gets its own cluster:
data in a temporary directory, listening on a free loopback port, trust authentication. As
root, the binaries run as the `postgres` system user (initdb refuses root).

`STEWARD_PG_BINDIR` names the directory of `initdb`/`pg_ctl` (default: the newest
`/usr/lib/postgresql/*/bin`, else whatever is on PATH).
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from mock_llm.process import free_port

SUPERUSER = "root"


class ClusterError(RuntimeError):
    """initdb / pg_ctl failed; the message carries their output and the server log."""


def find_bindir() -> Path:
    """The directory holding `initdb` and `pg_ctl`."""
    configured = os.environ.get("STEWARD_PG_BINDIR")
    if configured:
        return Path(configured)
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    if on_path is None:
        raise ClusterError("no pg_ctl found: set STEWARD_PG_BINDIR")
    return Path(on_path).parent


@dataclass
class PgCluster:
    """One cluster; `start()`, `stop(mode)`, `restart(mode)`, `destroy()`."""

    root: Path
    port: int
    bindir: Path
    restarts: int = 0
    _as_postgres: bool = field(default=False)

    @classmethod
    def create(cls) -> PgCluster:
        """initdb a new cluster in a temporary directory (not started yet)."""
        root = Path(tempfile.mkdtemp(prefix="steward-chaos-pg-"))
        cluster = cls(
            root=root, port=free_port(), bindir=find_bindir(), _as_postgres=os.geteuid() == 0
        )
        if cluster._as_postgres:
            shutil.chown(root, user="postgres", group="postgres")
            root.chmod(0o700)
        cluster._run(
            "initdb",
            "-D",
            str(cluster.data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        conf = cluster.data / "postgresql.conf"
        with conf.open("a") as out:
            out.write(
                "\n# steward chaos test\n"
                f"listen_addresses = '127.0.0.1'\nport = {cluster.port}\n"
                f"unix_socket_directories = '{root}'\n"
                "max_connections = 200\nfsync = off\nsynchronous_commit = on\n"
                "full_page_writes = off\nshared_buffers = 64MB\n"
                # fsync = off survives `stop -m immediate` (the OS keeps the WAL);
                # synchronous_commit = off would not: a crash drops commits already
                # acknowledged to the client (runs, decisions the API answered).
            )
        return cluster

    @property
    def data(self) -> Path:
        """The data directory."""
        return self.root / "data"

    @property
    def log(self) -> Path:
        """The server log (appended over restarts)."""
        return self.root / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        """A connection URL for `dbname`."""
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    def _run(self, tool: str, *args: str, timeout: float = 120.0) -> str:
        argv = [str(self.bindir / tool), *args]
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        out = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, check=False, cwd=self.root
        )
        if out.returncode != 0:
            log = self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""
            raise ClusterError(
                f"{tool} {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
                f"\n--- server log ---\n{log}"
            )
        return out.stdout

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        if self._as_postgres and not self.log.exists():
            self.log.touch()
            shutil.chown(self.log, user="postgres", group="postgres")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (`fast`, or `immediate`: a crash, recovery on the next start)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def restart(self, mode: str = "fast", down_s: float = 0.0) -> float:
        """Stop, stay down `down_s`, start again; returns the seconds it was unreachable."""
        started = time.monotonic()
        self.stop(mode)
        time.sleep(down_s)
        self.start()
        self.restarts += 1
        return time.monotonic() - started

    def running(self) -> bool:
        """True when `pg_ctl status` reports a running server."""
        try:
            self._run("pg_ctl", "-D", str(self.data), "status", timeout=20)
        except ClusterError:
            return False
        return True

    def destroy(self) -> None:
        """Stop the server if it runs and delete its files."""
        if self.running():
            with contextlib.suppress(ClusterError):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


__all__ = ["ClusterError", "PgCluster", "find_bindir"]
