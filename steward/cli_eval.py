"""`steward eval`: run the offline eval suite through the real graph, report, compare, upload."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from core.settings import Settings
    from evals.cases import EvalCase
    from evals.compare import Comparison
    from evals.results import CaseResult, RunReport
    from evals.runner import EvalOptions
    from graph.runtime import Runtime

DEFAULT_RESULTS = Path("evals/results")


@click.command("eval")
@click.option(
    "--dataset",
    "datasets",
    multiple=True,
    metavar="NAME|PATH",
    help="Dataset name in evals/datasets or a .jsonl path (repeatable; default: all).",
)
@click.option(
    "-k",
    "--case",
    "select",
    multiple=True,
    metavar="GLOB",
    help="Only cases whose id matches the glob (repeatable).",
)
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (default: evals/results/<UTC timestamp>).",
)
@click.option(
    "--compare",
    "baseline",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Exit 1 on a regression against this baseline.",
)
@click.option(
    "--update-baseline",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write this run (without traces) as the new baseline (refused on a safety-gate failure).",
)
@click.option(
    "--tolerance",
    multiple=True,
    metavar="EVALUATOR=DROP",
    help="Override an evaluator's allowed mean-score drop for --compare.",
)
@click.option(
    "--min-pass-rate",
    type=click.FloatRange(0, 1),
    default=None,
    help="Also exit 1 when fewer cases than this fraction pass.",
)
@click.option(
    "--mock", is_flag=True, help="Start the project's mock LLM provider and run against it."
)
@click.option(
    "--judge", is_flag=True, help="Add the LLM judge (openevals) using the configured chat model."
)
@click.option(
    "--langsmith", is_flag=True, help="Upload dataset + experiment when LANGSMITH_API_KEY is set."
)
@click.option(
    "--price",
    multiple=True,
    metavar="MODEL=IN,OUT[,CACHED]",
    help="USD per million tokens for a model missing from the price table.",
)
@click.option("--reindex", is_flag=True, help="Re-ingest data/policies before running.")
@click.option(
    "--no-reset",
    is_flag=True,
    help="Keep the demo orders' refunds and rejections (by default each case starts from its"
    " orders' initial state).",
)
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.pass_context
def eval_command(
    ctx: click.Context,
    datasets: tuple[str, ...],
    select: tuple[str, ...],
    concurrency: int,
    out: Path | None,
    baseline: Path | None,
    update_baseline: Path | None,
    tolerance: tuple[str, ...],
    min_pass_rate: float | None,
    mock: bool,
    judge: bool,
    langsmith: bool,
    price: tuple[str, ...],
    reindex: bool,
    no_reset: bool,
    no_progress: bool,
) -> None:
    """Run the eval datasets through the graph; write results.json and report.html."""
    from core.budget.prices import parse_price, price_table
    from core.settings import get_settings
    from evals.cases import DatasetError, load_cases
    from evals.compare import compare, load_report, parse_tolerance, render
    from evals.gate import render_gate, safety_failures
    from evals.runner import EvalOptions, ensure_index, mock_settings, provider_name
    from mock_llm.process import running_mock_llm

    try:
        cases = load_cases(list(datasets) or None, select=list(select) or None)
        tolerances = dict(parse_tolerance(t) for t in tolerance)
        prices = {**price_table(get_settings()), **dict(parse_price(p) for p in price)}
    except (DatasetError, ValueError) as exc:
        raise click.UsageError(str(exc)) from exc
    settings = get_settings()
    if not no_reset and settings.env == "production":
        raise click.UsageError("steward eval resets demo orders; don't run it in production")
    if judge and (mock or not settings.has_llm_provider):
        raise click.UsageError("--judge needs a real provider (OPENAI_API_KEY/OPENAI_BASE_URL)")
    if not mock:
        skipped = [c for c in cases if c.requires_mock]
        cases = [c for c in cases if not c.requires_mock]
        if skipped:
            click.echo(f"skipping {len(skipped)} cases that need the mock provider", err=True)
    if not cases:
        raise click.UsageError("no cases selected")
    verbose = bool((ctx.obj or {}).get("verbose"))

    with running_mock_llm() if mock else nullcontext() as mock_llm:
        if mock_llm is not None:
            settings = mock_settings(settings, mock_llm.base_url)
        ensure_index(settings, always=reindex)
        options = EvalOptions(
            concurrency=concurrency,
            provider=provider_name(settings, mock=mock),
            prices=prices,
            datasets=sorted({c.dataset for c in cases}),
            reset_orders=not no_reset,
            judge_model=_judge_model(settings) if judge else None,
            decide=decide_as_approver,
        )
        from core.observability.lifecycle import exporting_traces

        with _quiet(not verbose), exporting_traces(service_name="steward-eval"):
            report = asyncio.run(_run(settings, cases, options, progress=not no_progress))

    comparison = compare(load_report(baseline), report, tolerances) if baseline else None
    folder = out or DEFAULT_RESULTS / report.run.started_at.strftime("%Y%m%dT%H%M%SZ")
    _write_outputs(folder, report, comparison, baseline)
    _print_summary(report)
    if update_baseline is not None and safety_failures(report):
        click.echo(f"not writing {update_baseline}: a baseline cannot accept a safety failure")
    elif update_baseline is not None:
        update_baseline.parent.mkdir(parents=True, exist_ok=True)
        update_baseline.write_text(report.without_traces().model_dump_json(indent=1) + "\n")
        click.echo(f"baseline written to {update_baseline}")
    if langsmith:
        _upload(report, cases)
    failed = False
    if comparison is not None and baseline is not None:
        click.echo("\n".join(render(comparison, str(baseline))))
        failed = comparison.regressed
    click.echo("\n".join(render_gate(report)))
    if safety_failures(report):
        failed = True
    if min_pass_rate is not None and report.summary.pass_rate < min_pass_rate:
        click.echo(f"pass rate {report.summary.pass_rate:.1%} is below {min_pass_rate:.1%}")
        failed = True
    if failed:
        ctx.exit(1)


async def decide_as_approver(
    runtime: Runtime,
    *,
    thread_id: uuid.UUID,
    approver: str,
    tenant: str,
    requester: str,
    decisions: list[dict[str, Any]],
) -> Any:
    """The evals' `ApprovalDecider`: the service's in-process decision path, as `approver`."""
    from core.identity import Principal
    from server.runs.in_process import decide_in_process

    principal = Principal(key_id="eval", user_id=approver, tenant_id=tenant, role="approver")
    return await decide_in_process(
        runtime.pool,
        runtime.graph,
        thread_id=thread_id,
        principal=principal,
        requester=requester,
        decisions=decisions,
    )


def _judge_model(settings: Settings) -> Any:
    from steward.models import make_chat_model

    return make_chat_model(settings)


@contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    from evals.runner import quiet_logs

    with quiet_logs(logging.ERROR):
        yield


async def _run(
    settings: Settings, cases: list[EvalCase], options: EvalOptions, *, progress: bool
) -> RunReport:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    from evals.runner import run_suite
    from evals.store import save_run
    from steward.runtime import open_runtime

    bar = Progress(
        SpinnerColumn(),
        TextColumn("[bold]eval"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[tally]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=not progress,
    )
    tally = {"pass": 0, "fail": 0}

    async with open_runtime(settings) as runtime:
        with bar:
            task = bar.add_task("eval", total=len(cases), tally="")

            def advance(result: CaseResult) -> None:
                tally["pass" if result.passed else "fail"] += 1
                bar.update(
                    task, advance=1, tally=f"[green]{tally['pass']} pass [red]{tally['fail']} fail"
                )

            report = await run_suite(runtime, cases, options, on_result=advance)
        await save_run(runtime.pool, report)
    return report


def _write_outputs(
    folder: Path, report: RunReport, comparison: Comparison | None, baseline: Path | None
) -> None:
    from evals.report import render_html

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(report.model_dump_json(indent=1) + "\n")
    html = render_html(report, comparison, str(baseline or ""))
    (folder / "report.html").write_text(html, encoding="utf-8")
    click.echo(f"results: {folder / 'results.json'}\nreport:  {folder / 'report.html'}")


def _print_summary(report: RunReport) -> None:
    from rich.console import Console
    from rich.table import Table

    summary = report.summary
    table = Table(title=f"eval {report.run.run_id} ({report.run.provider}, {report.run.model})")
    for column in ("evaluator", "mean", "pass", "fail"):
        table.add_column(column, justify="left" if column == "evaluator" else "right")
    for name, s in summary.evaluators.items():
        table.add_row(name, f"{s.mean:.3f}", str(s.passed), str(s.failed))
    console = Console()
    console.print(table)
    console.print(
        f"{summary.passed}/{summary.cases} cases passed ({summary.pass_rate:.1%}), "
        f"{summary.errors} errors; wall {report.run.wall_s:.1f} s; latency p50 "
        f"{summary.latency_s.p50:.2f} s p95 {summary.latency_s.p95:.2f} s; cost per case "
        f"${summary.cost_usd.mean:.6f} (total ${summary.cost_usd.total:.4f}, "
        f"{summary.input_tokens:,} in / {summary.output_tokens:,} out tokens)",
        highlight=False,
    )


def _upload(report: RunReport, cases: list[EvalCase]) -> None:
    from evals.langsmith_upload import upload

    started = datetime.now(UTC)
    try:
        name = upload(report, cases)
    except Exception as exc:  # noqa: BLE001 - an upload failure must not hide the results
        click.echo(f"LangSmith upload failed: {type(exc).__name__}: {exc}", err=True)
        return
    if name is None:
        click.echo("LangSmith upload skipped: LANGSMITH_API_KEY is not set", err=True)
    else:
        seconds = (datetime.now(UTC) - started).total_seconds()
        click.echo(f"uploaded to LangSmith experiment {name} in {seconds:.1f} s")


if __name__ == "__main__":  # `python -m steward.cli_eval ...` until `steward eval` is wired in
    eval_command()
