"""Run event logs written when someone may read them, and without a lock on the run per insert.

Revision ID: 0011
Revises: 0001
Depends on: 0003 (runs, run_events)
Create Date: 2026-12-14

`runs.events_mode` says how the run's worker writes its events (`server.runs.events`):
`live` per batch as they come, `deferred` all at once in the run's final transaction (a run
nobody streams), `wanted` a client joined the stream of a deferred run and its worker is to
switch to `live` (it sets `live` once everything emitted so far is stored).

The foreign key from `run_events` to `runs` is dropped: every insert of a batch took a
`FOR KEY SHARE` lock on its run's row. Deleting a run still deletes its events, by a trigger
(the cascade the key did), and the periodic purge removes events whose run is gone (a batch
that raced its run's deletion).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("run_events_log",)
depends_on: str | Sequence[str] | None = "0003"


def upgrade() -> None:
    op.execute(
        "ALTER TABLE runs ADD COLUMN events_mode text NOT NULL DEFAULT 'live'"
        " CHECK (events_mode IN ('live', 'deferred', 'wanted'))"
    )
    op.execute("ALTER TABLE run_events DROP CONSTRAINT IF EXISTS run_events_run_id_fkey")
    op.execute(
        """
        CREATE FUNCTION run_events_follow_runs() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM run_events e USING gone g WHERE e.run_id = g.run_id;
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER run_events_follow_runs AFTER DELETE ON runs"
        " REFERENCING OLD TABLE AS gone FOR EACH STATEMENT"
        " EXECUTE FUNCTION run_events_follow_runs()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS run_events_follow_runs ON runs")
    op.execute("DROP FUNCTION IF EXISTS run_events_follow_runs()")
    op.execute(
        "DELETE FROM run_events e WHERE NOT EXISTS (SELECT 1 FROM runs r WHERE r.run_id = e.run_id)"
    )
    op.execute(
        "ALTER TABLE run_events ADD CONSTRAINT run_events_run_id_fkey"
        " FOREIGN KEY (run_id) REFERENCES runs (run_id) ON DELETE CASCADE"
    )
    op.execute("ALTER TABLE runs DROP COLUMN events_mode")
