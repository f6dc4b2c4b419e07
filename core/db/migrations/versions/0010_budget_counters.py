"""Budget counters: spend per (scope, window) in one row, so a reservation is O(1).

Revision ID: 0010
Revises: 0005
Create Date: 2026-12-03

`budget_counters` holds, per scope and window (a user's UTC day, a tenant's UTC month, a
thread's lifetime: window start 1970-01-01), the settled cost and the reservations still held
of the ledger rows charged to it. `core.budget.ledger` reserves with a conditional upsert of
these rows (no advisory lock, no sum over the ledger) and moves every change of a ledger row
into them in the same statement, so a counter always equals the sum over its ledger rows:
`spent_usd` of the settled costs, `reserved_usd` of the reservations held (below).

`usage_ledger.held_until`: when a reservation stops counting (reserve time plus
`STEWARD_BUDGET_RESERVATION_TTL_S`); null on rows the counters never held (written before
this revision, or by a replica still on the advisory-lock ledger). `expired_at`: when the
sweep took a reservation never settled (its process died) off its counters; the row stays
`reserved`, and a late settle still records its cost.

The backfill fills the current windows (today, this month, every thread) with the settled
costs of the existing rows. Their open reservations are not counted: the processes that made
them settle them without the counters.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE budget_counters (
            scope        text NOT NULL CHECK (scope IN ('user_day', 'tenant_month', 'thread')),
            tenant_id    text NOT NULL,
            subject      text NOT NULL,
            window_start timestamptz NOT NULL,
            reserved_usd numeric(18, 10) NOT NULL DEFAULT 0 CHECK (reserved_usd >= 0),
            spent_usd    numeric(18, 10) NOT NULL DEFAULT 0 CHECK (spent_usd >= 0),
            PRIMARY KEY (scope, tenant_id, subject, window_start)
        )
        """
    )
    op.execute("COMMENT ON COLUMN budget_counters.subject IS 'user id, thread id or empty'")
    op.execute(
        "ALTER TABLE usage_ledger ADD COLUMN held_until timestamptz,"
        " ADD COLUMN expired_at timestamptz"
    )
    op.execute(
        "CREATE INDEX usage_ledger_held_idx ON usage_ledger (held_until)"
        " WHERE status = 'reserved' AND held_until IS NOT NULL AND expired_at IS NULL"
    )
    op.execute(
        """
        INSERT INTO budget_counters (scope, tenant_id, subject, window_start, spent_usd)
        SELECT k.scope, l.tenant_id, k.subject, k.window_start, sum(l.cost_usd)
        FROM usage_ledger l
        CROSS JOIN LATERAL (VALUES
            ('tenant_month', '', date_trunc('month', l.created_at, 'UTC')),
            ('thread', l.thread_id, 'epoch'::timestamptz),
            ('user_day', l.user_id, date_trunc('day', l.created_at, 'UTC'))
        ) AS k (scope, subject, window_start)
        WHERE l.status = 'settled' AND k.subject IS NOT NULL
          AND (k.scope = 'thread' OR l.created_at >= date_trunc('month', now(), 'UTC'))
          AND (k.scope <> 'user_day' OR l.created_at >= date_trunc('day', now(), 'UTC'))
        GROUP BY k.scope, l.tenant_id, k.subject, k.window_start
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS usage_ledger_held_idx")
    op.execute("ALTER TABLE usage_ledger DROP COLUMN held_until, DROP COLUMN expired_at")
    op.execute("DROP TABLE IF EXISTS budget_counters")
