"""The benches' Postgres: a throwaway cluster with pg_stat_statements, or an existing server.

pg_stat_statements needs `shared_preload_libraries`, which takes a server restart; the bench
never restarts a server it did not start. So by default it runs its own cluster: `initdb` and
`pg_ctl` from the newest /usr/lib/postgresql/<version>/bin, a fresh data directory under
/tmp, TCP on 127.0.0.1 at a free port, `-c shared_preload_libraries=pg_stat_statements`,
trust auth, everything else at Postgres's defaults (fsync on). As root it runs them as the
`postgres` system user (initdb refuses root). It is stopped and deleted afterwards.
(core/db/embedded.py's pgserver does not fit: it listens on a Unix socket only and takes no
server options.)

Given an existing server instead (`--pg-url`), statement counts are reported only if that
server already preloads pg_stat_statements.

The CPU of "Postgres" is that of the postmaster's process tree: backends (their CPU moves to
the postmaster's cutime when they exit) and the background processes.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from proc_cpu import parent_pid

from mock_llm.process import free_port

PG_LIB_ROOT = Path("/usr/lib/postgresql")
MONITOR_DB = "postgres"
"""The database the bench's own connection uses; its statements are left out of the counts."""


@dataclass
class PgServer:
    admin_url: str
    postmaster_pid: int | None
    statements: bool
    """pg_stat_statements is loaded and its view exists in MONITOR_DB."""
    description: str

    def database_url(self, name: str) -> str:
        return f"{self.admin_url.rsplit('/', 1)[0]}/{name}"


@dataclass
class Statement:
    query: str
    calls: int
    exec_ms: float
    wal_bytes: int


def find_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl."""
    candidates = [
        p / "bin"
        for p in PG_LIB_ROOT.glob("*")
        if (p / "bin" / "initdb").exists() and (p / "bin" / "pg_ctl").exists()
    ]
    if not candidates:
        return None
    return max(candidates, key=lambda b: [int(x) for x in re.findall(r"\d+", b.parent.name)])


def _run_as(user: str | None, argv: list[str], cwd: Path, timeout: float) -> None:
    out = subprocess.run(
        argv,
        cwd=cwd,
        user=user,
        group=user,
        extra_groups=[] if user else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({out.returncode}):\n{out.stderr[-2000:]}")


@contextlib.contextmanager
def throwaway_cluster(bindir: Path, max_connections: int = 300) -> Iterator[PgServer]:
    """initdb + pg_ctl start a cluster with pg_stat_statements; stop and delete it on exit."""
    run_as = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="steward-bench-pg-"))
    data, sock, log = base / "data", base / "sock", base / "server.log"
    sock.mkdir()
    if run_as:
        for path in (base, sock):
            shutil.chown(path, run_as, run_as)
    superuser = getpass.getuser()
    port = free_port()
    pg_ctl = str(bindir / "pg_ctl")
    try:
        _run_as(
            run_as,
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                superuser,
                "--auth=trust",
                "-E",
                "UTF8",
            ],
            base,
            120,
        )
        options = (
            f"-p {port} -h 127.0.0.1 -k {sock} -c shared_preload_libraries=pg_stat_statements "
            f"-c max_connections={max_connections} -c pg_stat_statements.max=10000 "
            "-c pg_stat_statements.track=top -c pg_stat_statements.track_utility=on"
        )
        _run_as(
            run_as,
            [pg_ctl, "-D", str(data), "-l", str(log), "-w", "-o", options, "start"],
            base,
            90,
        )
        try:
            admin_url = f"postgresql://{superuser}@127.0.0.1:{port}/{MONITOR_DB}"
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                version = conn.execute("SHOW server_version").fetchone()
            pid_line = (data / "postmaster.pid").read_text().splitlines()[0]
            yield PgServer(
                admin_url,
                int(pid_line),
                True,
                f"throwaway PostgreSQL {version[0] if version else '?'} cluster "
                f"({bindir.parent}), 127.0.0.1:{port}, shared_preload_libraries="
                "pg_stat_statements, other settings at their defaults",
            )
        finally:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                _run_as(run_as, [pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"], base, 60)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def existing_server(admin_url: str) -> PgServer:
    """An already running server; statements only if it preloads pg_stat_statements."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        preload = conn.execute("SHOW shared_preload_libraries").fetchone()
        version = conn.execute("SHOW server_version").fetchone()
        backend = conn.execute("SELECT pg_backend_pid()").fetchone()
        loaded = bool(preload and "pg_stat_statements" in str(preload[0]))
        if loaded:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    # our backend's parent is the postmaster (only meaningful when the server is on this host)
    postmaster = parent_pid(int(backend[0])) if backend else None
    note = "" if loaded else " (pg_stat_statements not preloaded: no statement counts)"
    return PgServer(
        admin_url,
        postmaster,
        loaded,
        f"existing PostgreSQL {version[0] if version else '?'} at {admin_url}{note}",
    )


def create_database(server: PgServer, name: str) -> str:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server.database_url(name)


def drop_database(server: PgServer, name: str) -> None:
    with psycopg.connect(server.admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def reset_statements(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT pg_stat_statements_reset()")


def read_statements(conn: psycopg.Connection[Any]) -> list[Statement]:
    """Every statement recorded since the reset, outside MONITOR_DB, summed over users."""
    rows = conn.execute(
        """
        SELECT s.query, sum(s.calls), sum(s.total_exec_time), sum(s.wal_bytes)
        FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
        WHERE d.datname <> %s
        GROUP BY s.query
        """,
        (MONITOR_DB,),
    ).fetchall()
    return [Statement(str(q), int(c), float(t), int(w)) for q, c, t, w in rows]


_WORD = re.compile(r"\s*([A-Za-z]+)")
_TABLE = r"\s+(?:ONLY\s+)?\"?([\w.]+)\"?"
_CALL = re.compile(r"\s*SELECT\s+([\w.]+)\s*\(", re.IGNORECASE)
_TARGETS = {
    "INSERT": re.compile(r"\bINSERT\s+INTO" + _TABLE, re.IGNORECASE),
    "UPDATE": re.compile(r"\bUPDATE" + _TABLE, re.IGNORECASE),
    "DELETE": re.compile(r"\bDELETE\s+FROM" + _TABLE, re.IGNORECASE),
    "SELECT": re.compile(r"\bFROM" + _TABLE, re.IGNORECASE),
}


def _top_level(pattern: re.Pattern[str], query: str) -> re.Match[str] | None:
    """The first match outside parentheses (not in a sub-select or a function's arguments)."""
    for found in pattern.finditer(query):
        head = query[: found.start()]
        if head.count("(") == head.count(")"):
            return found
    return None


def statement_kind(query: str) -> str:
    """`INSERT runs`, `SELECT checkpoints`, `BEGIN`, `WITH/UPDATE runs`...: verb and table."""
    match = _WORD.match(query)
    verb = match.group(1).upper() if match else "?"
    if verb == "WITH":  # the first table the CTEs touch (the outer FROM may name a CTE)
        for inner in ("INSERT", "UPDATE", "DELETE", "SELECT"):
            found = _TARGETS[inner].search(query)
            if found:
                return f"WITH/{inner} {found.group(1).lower()}"
        return "WITH"
    pattern = _TARGETS.get(verb)
    if pattern is None:
        return verb
    found = _top_level(pattern, query)
    if found:
        return f"{verb} {found.group(1).lower()}"
    call = _CALL.match(query)  # SELECT pg_notify(...), SELECT pg_advisory_xact_lock(...)
    return f"{verb} {call.group(1).lower()}()" if call else verb


def normalized(query: str, width: int = 110) -> str:
    """One line, at most `width` characters (pg_stat_statements already replaced constants)."""
    text = " ".join(query.split())
    return text if len(text) <= width else text[: width - 1] + "…"
