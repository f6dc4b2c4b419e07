"""The `steward` command line."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import Any

import click

from core.errors import StewardError
from core.settings import get_settings

DEFAULT_CORPUS = Path("data/policies")


def _steward_errors(exc: BaseException) -> list[StewardError]:
    """Our own errors in `exc`, also inside exception groups (anyio, TaskGroups)."""
    if isinstance(exc, StewardError):
        return [exc]
    if isinstance(exc, BaseExceptionGroup):
        found = [err for sub in exc.exceptions for err in _steward_errors(sub)]
        return found if len(found) == len(exc.exceptions) else []
    return []


class StewardGroup(click.Group):
    """The command group: one of our errors ends a command with its message and exit code 2.

    Bad settings, a port in use, production without a provider, no index: one line each, no
    traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        """Run the command; report our errors without a traceback."""
        try:
            return super().invoke(ctx)
        except (Exception, BaseExceptionGroup) as exc:  # ours are re-told below
            errors = _steward_errors(exc)
            if not errors:
                raise
            for error in errors:
                for line in str(error).splitlines() or [type(error).__name__]:
                    click.echo(f"steward: error: {line}", err=True)
            sys.exit(2)


def _setup_logging(verbose: bool) -> None:
    from core.observability.logging import configure_logging

    configure_logging(get_settings(), level="DEBUG" if verbose else None)
    for noisy in ("httpx", "httpcore", "sentence_transformers", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group(cls=StewardGroup)
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Steward: a stateful support and operations agent with human approvals."""
    ctx.obj = {"verbose": verbose}
    _setup_logging(verbose)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--replace",
    is_flag=True,
    help="Make the index exactly PATHS: drop the documents of earlier ingests not among them.",
)
@click.option(
    "--if-missing", is_flag=True, help="Do nothing when an index exists already (`make chat`)."
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def ingest(paths: tuple[Path, ...], replace: bool, if_missing: bool, no_progress: bool) -> None:
    """Add PATHS to the knowledge index, or update them (default: data/policies).

    A document already in the index under the same name (its path relative to the directory
    given, or its file name) is replaced; new documents are added; the others stay, unless
    --replace.
    """
    from core.knowledge.embeddings import make_embedder
    from core.knowledge.index import MANIFEST_FILE
    from core.knowledge.ingest import ingest as run_ingest

    settings = get_settings()
    if if_missing and (settings.index_dir / MANIFEST_FILE).exists():
        click.echo(f"a knowledge index exists in {settings.index_dir}: nothing to do")
        return
    targets = list(paths) or [DEFAULT_CORPUS]
    report = run_ingest(
        targets,
        settings.index_dir,
        make_embedder(settings),
        replace=replace,
        progress=not no_progress,
    )
    total = report.documents_added + report.documents_updated + report.documents_unchanged
    click.echo(
        f"indexed {report.chunks_total} chunks from {total + report.documents_kept} "
        f"documents ({report.documents_added} added, {report.documents_updated} updated, "
        f"{report.documents_unchanged} unchanged, {report.documents_kept} kept from earlier "
        f"ingests, {report.documents_removed} removed; {report.chunks_embedded} chunks "
        f"embedded) in {report.seconds:.1f}s -> {settings.index_dir}"
    )


@main.command()
def migrate() -> None:
    """Create or upgrade the database schema (also run by every command that needs it)."""
    from core.db.embedded import resolve_database_url
    from core.db.migrate import migrate as run_migrate
    from core.db.pool import open_pool

    settings = get_settings()

    async def go() -> None:
        url = await asyncio.to_thread(resolve_database_url, settings)
        async with open_pool(url, settings) as pool:
            await run_migrate(pool, url)

    asyncio.run(go())
    click.echo("database schema is up to date")


@main.command()
@click.option("--reset", is_flag=True, help="Also delete the demo orders' refunds.")
def seed(reset: bool) -> None:
    """Load the demo orders (idempotent)."""
    from core.db.embedded import resolve_database_url
    from core.db.migrate import migrate as run_migrate
    from core.db.pool import open_pool
    from core.domain.seed import seed_demo_orders

    settings = get_settings()

    async def go() -> int:
        url = await asyncio.to_thread(resolve_database_url, settings)
        async with open_pool(url, settings) as pool:
            await run_migrate(pool, url)
            return await seed_demo_orders(pool, reset=reset)

    click.echo(f"seeded {asyncio.run(go())} demo orders")


@main.command()
@click.pass_context
def chat(ctx: click.Context) -> None:
    """Talk to the agent in the terminal; refunds over the threshold ask you to approve."""
    from core.observability.lifecycle import exporting_traces
    from steward.chat import chat_loop
    from steward.runtime import open_runtime

    if not ctx.obj["verbose"]:
        logging.getLogger().setLevel(logging.WARNING)  # keep the conversation readable

    settings = get_settings()

    async def go() -> None:
        async with open_runtime(settings) as runtime:
            await chat_loop(runtime)

    with exporting_traces():
        asyncio.run(go())


@main.command("mock-llm")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8399, show_default=True, type=int)
@click.option("--latency-ms", default=0, show_default=True, type=int)
@click.option("--error-rate", default=0.0, show_default=True, type=float)
@click.option("--stream-delay-ms", default=0, show_default=True, type=int)
@click.option("--seed", "rng_seed", default=0, show_default=True, type=int)
def mock_llm(
    host: str, port: int, latency_ms: int, error_rate: float, stream_delay_ms: int, rng_seed: int
) -> None:
    """Run the OpenAI-compatible mock LLM provider (scripted, with fault injection)."""
    from mock_llm.server import run

    run(
        host,
        port,
        latency_ms=latency_ms,
        error_rate=error_rate,
        stream_delay_ms=stream_delay_ms,
        seed=rng_seed,
    )


def _register_subcommands() -> None:
    from steward.cli_eval import eval_command
    from steward.cli_server import keys, serve

    main.add_command(serve)
    main.add_command(keys)
    main.add_command(eval_command)


_register_subcommands()
