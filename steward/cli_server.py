"""`steward serve` and `steward keys create|list|revoke` (registered in `steward.cli`).

Also runnable alone: `python -m steward.cli_server serve|keys ...`.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from core.errors import ConfigError
from core.settings import Settings, get_settings

if TYPE_CHECKING:
    from server.keys import KeyInfo, KeyStore

logger = logging.getLogger(__name__)

DEFAULT_CORPUS = Path("data/policies")
CHECKOUT_CORPUS = Path(__file__).resolve().parent.parent / "data" / "policies"
"""The sample policies of the checkout an editable install runs from."""
T = TypeVar("T")


def _index_exists(settings: Settings) -> bool:
    from core.knowledge.index import MANIFEST_FILE

    return (settings.index_dir / MANIFEST_FILE).exists()


def ensure_port_free(host: str, port: int) -> None:
    """Fail at once when `host:port` cannot be listened on (before minutes of start-up work).

    Binds (with SO_REUSEADDR, as uvicorn does) every address `host` resolves to, then lets go.

    Raises:
        ConfigError: the port is taken, or the address cannot be bound; the message says how
            to choose another.
    """
    how = "choose another with `--port N` (`make run PORT=N`)"
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    for family, kind, proto, _, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ConfigError(
                        f"port {port} on {host} is already in use (another `steward serve`?): {how}"
                    ) from None
                raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def check_can_serve(settings: Settings, host: str, port: int) -> None:
    """What `steward serve` checks before any start-up work (index, migrations, seeding).

    Raises:
        ConfigError: the port is taken; production without a provider or without an index.
    """
    from steward.models import require_provider

    ensure_port_free(host, port)
    require_provider(settings)
    if settings.env == "production" and not _index_exists(settings):
        raise ConfigError(
            f"no knowledge index in {settings.index_dir}: build it with `steward ingest PATH` "
            "first (production does not index the sample policies by itself)"
        )


def prepare_development(settings: Settings, corpus: Path = DEFAULT_CORPUS) -> None:
    """In development with no index yet: ingest `corpus` and seed the demo orders.

    So `make run` / a fresh checkout gives a working service. Blocking; call before serving.
    """
    if settings.env != "development" or _index_exists(settings):
        return
    from core.db.embedded import resolve_database_url
    from core.db.migrate import migrate
    from core.db.pool import open_pool
    from core.domain.seed import seed_demo_orders
    from core.knowledge.embeddings import make_embedder
    from core.knowledge.ingest import ingest

    if not corpus.exists() and corpus == DEFAULT_CORPUS and CHECKOUT_CORPUS.exists():
        corpus = CHECKOUT_CORPUS  # started outside the checkout it was installed from
    if not corpus.exists():
        raise click.ClickException(
            f"no knowledge index in {settings.index_dir} and no sample policies at {corpus}: "
            "run `steward ingest PATH` first (or start from the checkout)"
        )
    click.echo(f"no knowledge index in {settings.index_dir}: ingesting {corpus} ...", err=True)
    ingest([corpus], settings.index_dir, make_embedder(settings), progress=sys.stderr.isatty())

    async def seed() -> int:
        url = await asyncio.to_thread(resolve_database_url, settings)
        async with open_pool(url, settings) as pool:
            await migrate(pool, url)
            return await seed_demo_orders(pool)

    click.echo(f"seeded {asyncio.run(seed())} demo orders", err=True)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8080, show_default=True, type=int, help="TCP port.")
@click.option(
    "--log-level",
    default="info",
    show_default=True,
    type=click.Choice(["debug", "info", "warning", "error"]),
)
def serve(host: str, port: int, log_level: str) -> None:
    """Run the HTTP service (LangGraph Server API subset and approval queue).

    SIGTERM or SIGINT drains first (`server.drain`): `/readyz` answers 503 at once, no new
    runs are claimed, the listener serves for STEWARD_SHUTDOWN_DELAY_S more, then running runs
    get STEWARD_RUN_SHUTDOWN_GRACE_S before they go back to the queue. A second signal skips
    the delay. On the way out the embedded Postgres (no DATABASE_URL) is stopped, unless
    another process still uses it.

    With OTEL_EXPORTER_OTLP_ENDPOINT (or the other standard OTEL_* variables) set, spans are
    exported for the life of the process and flushed after the drain, before it exits.
    """
    from core.observability.lifecycle import exporting_traces

    settings = get_settings()
    check_can_serve(settings, host, port)
    try:
        prepare_development(settings)
        with exporting_traces():
            _serve(settings, host, port, log_level)
    finally:
        release_embedded(settings)


def _serve(settings: Settings, host: str, port: int, log_level: str) -> None:
    """Run uvicorn until the drain (SIGTERM/SIGINT) and the app's shutdown are done."""
    import uvicorn

    from server.app import create_app, report_startup_errors
    from server.drain import HTTP_SHUTDOWN_TIMEOUT_S, Drain, DrainingServer
    from steward.runtime import open_runtime

    drain = Drain()
    config = uvicorn.Config(
        lambda: report_startup_errors(create_app(open_runtime, settings, drain=drain)),
        factory=True,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        lifespan="on",
        proxy_headers=True,
        timeout_graceful_shutdown=HTTP_SHUTDOWN_TIMEOUT_S,
    )
    if log_level == "info":  # uvicorn's start/stop lines; ours say where it listens
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    DrainingServer(config, drain=drain, delay_s=settings.shutdown_delay_s).run()


def release_embedded(settings: Settings) -> None:
    """Give up this process's handle on the embedded Postgres (stops it if it was the last)."""
    if settings.database_url:
        return
    from core.db.embedded import stop_embedded

    try:
        stop_embedded(settings.home)
    except Exception:
        logger.exception("could not stop the embedded PostgreSQL in %s", settings.home)


def _with_key_store(fn: Callable[[KeyStore], Awaitable[T]]) -> T:
    """Open a pool on the configured database (migrated), run `fn` with a `KeyStore`."""
    from core.db.embedded import resolve_database_url
    from core.db.migrate import migrate
    from core.db.pool import open_pool
    from server.keys import KeyStore

    settings = get_settings().model_copy(update={"db_pool_min": 1, "db_pool_max": 2})

    async def go() -> T:
        url = await asyncio.to_thread(resolve_database_url, settings)
        async with open_pool(url, settings) as pool:
            await migrate(pool, url)
            return await fn(KeyStore(pool))

    return asyncio.run(go())


@click.group()
def keys() -> None:
    """Manage API keys (only their sha256 is stored)."""


@keys.command("create")
@click.option("--user", "user_id", required=True, help="User id the key acts as.")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["user", "approver", "admin"]),
    help="user: own threads; approver: + decide approvals; admin: + all tenants' queue.",
)
@click.option("--tenant", "tenant_id", default="default", show_default=True, help="Tenant id.")
def keys_create(user_id: str, role: str, tenant_id: str) -> None:
    """Create a key and print it (shown once: it cannot be recovered)."""
    from server.keys import role_of

    raw = _with_key_store(lambda store: store.create(user_id, tenant_id, role_of(role)))
    click.echo(f"created {role} key for {user_id}@{tenant_id} (shown once):", err=True)
    click.echo(raw)


@keys.command("list")
def keys_list() -> None:
    """List keys (id, user, tenant, role, created, revoked); never the secrets."""
    rows: list[KeyInfo] = _with_key_store(lambda store: store.list())
    if not rows:
        click.echo("no keys", err=True)
        return
    click.echo(f"{'KEY_ID':<10} {'USER':<20} {'TENANT':<16} {'ROLE':<9} {'CREATED':<20} REVOKED")
    for r in rows:
        revoked = r["revoked_at"].strftime("%Y-%m-%d %H:%M:%S") if r["revoked_at"] else "-"
        click.echo(
            f"{r['key_id']:<10} {r['user_id']:<20} {r['tenant_id']:<16} {r['role']:<9} "
            f"{r['created_at'].strftime('%Y-%m-%d %H:%M:%S'):<20} {revoked}"
        )


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke KEY_ID (running servers stop accepting it within 10 seconds)."""
    if not _with_key_store(lambda store: store.revoke(key_id)):
        click.echo(f"no active key {key_id}", err=True)
        sys.exit(1)
    click.echo(f"revoked {key_id}")


__all__ = ["keys", "prepare_development", "serve"]
