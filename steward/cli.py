"""The `steward` command line."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from core.settings import get_settings

DEFAULT_CORPUS = Path("data/policies")


def _setup_logging(verbose: bool) -> None:
    from core.observability.logging import configure_logging

    configure_logging(get_settings(), level="DEBUG" if verbose else None)
    for noisy in ("httpx", "httpcore", "sentence_transformers", "faiss"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.pass_context
def main(ctx: click.Context, verbose: bool) -> None:
    """Steward: a stateful support and operations agent with human approvals."""
    ctx.obj = {"verbose": verbose}
    _setup_logging(verbose)


@main.command()
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def ingest(paths: tuple[Path, ...], no_progress: bool) -> None:
    """Build or update the knowledge index from PATHS (default: data/policies)."""
    from core.knowledge.embeddings import make_embedder
    from core.knowledge.ingest import ingest as run_ingest

    settings = get_settings()
    targets = list(paths) or [DEFAULT_CORPUS]
    report = run_ingest(
        targets, settings.index_dir, make_embedder(settings), progress=not no_progress
    )
    click.echo(
        f"indexed {report.chunks_total} chunks from "
        f"{report.documents_added + report.documents_updated + report.documents_unchanged} "
        f"documents ({report.documents_added} added, {report.documents_updated} updated, "
        f"{report.documents_unchanged} unchanged, {report.documents_removed} removed; "
        f"{report.chunks_embedded} chunks embedded) in {report.seconds:.1f}s "
        f"-> {settings.index_dir}"
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
