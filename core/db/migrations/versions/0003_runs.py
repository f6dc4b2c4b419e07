"""Runs and their event log.

Revision ID: 0003
Revises: 0001
Depends on: 0002 (threads)
Create Date: 2025-01-03

`runs` is the queue and the record of every run: any replica claims pending runs with
`FOR UPDATE SKIP LOCKED`, holds them with a lease and writes the run's stream to `run_events`.
The partial unique index `runs_one_running_per_thread` is what guarantees one active run per
thread across replicas; no process-local lock is relied upon.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("runs",)
depends_on: str | Sequence[str] | None = "0002"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE runs (
            run_id             uuid PRIMARY KEY,
            thread_id          uuid NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
            tenant_id          text NOT NULL,
            owner_id           text NOT NULL,
            assistant_id       text NOT NULL,
            status             text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'success', 'error', 'timeout',
                                  'interrupted')),
            kwargs             jsonb NOT NULL DEFAULT '{}'::jsonb,
            metadata           jsonb NOT NULL DEFAULT '{}'::jsonb,
            multitask_strategy text NOT NULL DEFAULT 'enqueue'
                CHECK (multitask_strategy IN ('reject', 'enqueue', 'interrupt', 'rollback')),
            worker_id          text,
            lease_expires_at   timestamptz,
            attempt            integer NOT NULL DEFAULT 1,
            cancel_action      text NULL CHECK (cancel_action IN ('interrupt', 'rollback')),
            error              jsonb,
            output             jsonb,
            created_at         timestamptz NOT NULL DEFAULT now(),
            updated_at         timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX runs_one_running_per_thread ON runs (thread_id)"
        " WHERE status = 'running'"
    )
    op.execute(
        "CREATE INDEX runs_pending_idx ON runs (created_at, run_id) WHERE status = 'pending'"
    )
    op.execute("CREATE INDEX runs_thread_idx ON runs (thread_id, created_at DESC)")
    op.execute(
        "CREATE INDEX runs_running_lease_idx ON runs (lease_expires_at) WHERE status = 'running'"
    )
    op.execute(
        "CREATE INDEX runs_temporary_idx ON runs (thread_id)"
        " WHERE kwargs @> '{\"temporary\": true}'::jsonb"
    )
    op.execute(
        """
        CREATE TABLE run_events (
            run_id     uuid NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
            seq        bigint NOT NULL,
            event      text NOT NULL,
            data       jsonb,
            created_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (run_id, seq)
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS run_events")
    op.execute("DROP TABLE IF EXISTS runs")
