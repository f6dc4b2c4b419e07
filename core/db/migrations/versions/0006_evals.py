"""Offline eval results: runs, per-case results with their traces, per-evaluator scores.

Revision ID: 0006
Revises: 0001
Create Date: 2025-01-06

Written by `steward eval`; `results.json` in the run's output folder holds the same data. A
branch of its own (`evals`), so it does not order against the service's other tables.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("evals",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE eval_runs (
            run_id        text PRIMARY KEY,
            started_at    timestamptz NOT NULL,
            finished_at   timestamptz NOT NULL,
            wall_s        double precision NOT NULL,
            provider      text NOT NULL,
            model         text NOT NULL,
            datasets      text[] NOT NULL,
            concurrency   integer NOT NULL,
            judge         boolean NOT NULL DEFAULT false,
            cases_total   integer NOT NULL,
            cases_passed  integer NOT NULL,
            config        jsonb NOT NULL DEFAULT '{}'::jsonb,
            summary       jsonb NOT NULL DEFAULT '{}'::jsonb
        )
        """
    )
    op.execute("CREATE INDEX eval_runs_started_at_idx ON eval_runs (started_at DESC)")
    op.execute(
        """
        CREATE TABLE eval_case_results (
            run_id        text NOT NULL REFERENCES eval_runs (run_id) ON DELETE CASCADE,
            case_id       text NOT NULL,
            dataset       text NOT NULL,
            category      text NOT NULL,
            passed        boolean NOT NULL,
            error         text,
            latency_ms    integer NOT NULL CHECK (latency_ms >= 0),
            input_tokens  integer NOT NULL DEFAULT 0,
            output_tokens integer NOT NULL DEFAULT 0,
            cost_usd      numeric(14, 8),
            thread_id     text,
            trace         jsonb,
            PRIMARY KEY (run_id, case_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE eval_scores (
            run_id     text NOT NULL,
            case_id    text NOT NULL,
            evaluator  text NOT NULL,
            score      double precision CHECK (score IS NULL OR (score >= 0 AND score <= 1)),
            passed     boolean,
            value      double precision,
            comment    text NOT NULL DEFAULT '',
            PRIMARY KEY (run_id, case_id, evaluator),
            FOREIGN KEY (run_id, case_id)
                REFERENCES eval_case_results (run_id, case_id) ON DELETE CASCADE
        )
        """
    )
    op.execute("CREATE INDEX eval_scores_evaluator_idx ON eval_scores (evaluator, run_id)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS eval_scores")
    op.execute("DROP TABLE IF EXISTS eval_case_results")
    op.execute("DROP TABLE IF EXISTS eval_runs")
