"""Persist eval runs in Postgres (tables of migration 0006) and read their history back."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

from psycopg.types.json import Jsonb

from core.jsonable import pg_text, to_jsonable
from evals.results import RunReport

if TYPE_CHECKING:
    from core.db.pool import DbPool

_INSERT_RUN = """
    INSERT INTO eval_runs (run_id, started_at, finished_at, wall_s, provider, model, datasets,
                           concurrency, judge, cases_total, cases_passed, config, summary)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
_INSERT_CASE = """
    INSERT INTO eval_case_results (run_id, case_id, dataset, category, passed, error, latency_ms,
                                   input_tokens, output_tokens, cost_usd, thread_id, trace)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""
_INSERT_SCORE = """
    INSERT INTO eval_scores (run_id, case_id, evaluator, score, passed, value, comment)
    VALUES (%s, %s, %s, %s, %s, %s, %s)
"""


async def save_run(pool: DbPool, report: RunReport) -> None:
    """Write the run, its case results (with traces) and every score in one transaction."""
    run = report.run
    case_rows = [
        (
            run.run_id,
            c.case_id,
            c.dataset,
            c.category,
            c.passed,
            pg_text(c.error),
            round(c.latency_s * 1000),
            c.input_tokens,
            c.output_tokens,
            None if c.cost_usd is None else Decimal(f"{c.cost_usd:.8f}"),
            c.trace.thread_id if c.trace else None,
            Jsonb(to_jsonable(c.trace)) if c.trace else None,
        )
        for c in report.cases
    ]
    score_rows = [
        (
            run.run_id,
            c.case_id,
            s.name,
            s.score,
            s.passed,
            s.value,
            pg_text(s.comment),
        )
        for c in report.cases
        for s in c.scores.values()
    ]
    async with pool.connection() as conn, conn.transaction():
        await conn.execute(
            _INSERT_RUN,
            (
                run.run_id,
                run.started_at,
                run.finished_at,
                run.wall_s,
                run.provider,
                run.model,
                run.datasets,
                run.concurrency,
                run.judge,
                report.summary.cases,
                report.summary.passed,
                Jsonb(run.config),
                Jsonb(report.summary.model_dump(mode="json")),
            ),
        )
        async with conn.cursor() as cur:
            await cur.executemany(_INSERT_CASE, case_rows)
            await cur.executemany(_INSERT_SCORE, score_rows)


async def recent_runs(pool: DbPool, limit: int = 10) -> list[dict[str, Any]]:
    """The latest runs, newest first: id, start, provider, model, pass counts."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT run_id, started_at, provider, model, cases_total, cases_passed, wall_s"
                " FROM eval_runs ORDER BY started_at DESC LIMIT %s",
                (limit,),
            )
        ).fetchall()
    return [dict(r) for r in rows]


async def evaluator_means(pool: DbPool, run_id: str) -> dict[str, float]:
    """Mean score per evaluator of one stored run (applicable cases only)."""
    async with pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT evaluator, avg(score) AS mean FROM eval_scores"
                " WHERE run_id = %s AND score IS NOT NULL GROUP BY evaluator ORDER BY evaluator",
                (run_id,),
            )
        ).fetchall()
    return {r["evaluator"]: float(r["mean"]) for r in rows}
