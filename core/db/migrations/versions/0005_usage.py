"""Usage ledger: one row per model call, reserved before the call and settled after it.

Revision ID: 0005
Revises: 0001
Create Date: 2025-01-05

A row is `reserved` (estimate: counted prompt + output at its max_tokens cap, priced) before
the call, then `settled` with the provider's reported usage and cost, or `released` (cost 0)
when the call failed. Budgets sum settled costs plus live reservations per (tenant, user, UTC
day), (tenant, UTC month) and thread, under advisory locks (core.budget.ledger). A branch of
its own (`usage`), so it does not order against the other features' tables.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("usage",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE usage_ledger (
            call_id                uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            run_id                 text,
            thread_id              text,
            user_id                text NOT NULL,
            tenant_id              text NOT NULL,
            model                  text NOT NULL,
            route                  text,
            status                 text NOT NULL DEFAULT 'reserved'
                CHECK (status IN ('reserved', 'settled', 'released')),
            estimated_input_tokens integer NOT NULL CHECK (estimated_input_tokens >= 0),
            max_output_tokens      integer NOT NULL CHECK (max_output_tokens >= 0),
            reserved_usd           numeric(18, 10) NOT NULL CHECK (reserved_usd >= 0),
            input_tokens           integer,
            output_tokens          integer,
            cached_input_tokens    integer,
            cost_usd               numeric(18, 10),
            usage_source           text CHECK (usage_source IN ('provider', 'estimate')),
            created_at             timestamptz NOT NULL DEFAULT now(),
            settled_at             timestamptz
        )
        """
    )
    op.execute(
        "CREATE INDEX usage_ledger_tenant_user_idx ON usage_ledger (tenant_id, user_id, created_at)"
    )
    op.execute("CREATE INDEX usage_ledger_tenant_idx ON usage_ledger (tenant_id, created_at)")
    op.execute("CREATE INDEX usage_ledger_thread_idx ON usage_ledger (thread_id)")
    op.execute("CREATE INDEX usage_ledger_run_idx ON usage_ledger (run_id)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS usage_ledger")
