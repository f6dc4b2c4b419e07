"""Runs count the leases they lost apart from their attempts.

Revision ID: 0008
Revises: 0007 (and needs 0003, which creates `runs`)
Create Date: 2026-12-02

`attempt` fences every write of one execution and grows each time a run is handed on: when
its lease expires (its replica died), and when a replica gives it back (a drain, a lost
database). Only the first is a reason to give up on a run, so `lost_leases` counts those and
the reaper fails a run once it has lost `STEWARD_RUN_MAX_ATTEMPTS` leases; a run that went
through several rolling restarts is not failed for it.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = ("0003",)


def upgrade() -> None:
    op.execute("ALTER TABLE runs ADD COLUMN lost_leases integer NOT NULL DEFAULT 0")


def downgrade() -> None:
    op.execute("ALTER TABLE runs DROP COLUMN lost_leases")
