"""Demo orders and refunds.

Revision ID: 0001
Revises:
Create Date: 2025-01-01

Money is integer cents. `refunds.idempotency_key` is UNIQUE: it is what makes a replayed tool
call (resume after an interrupt, client retry) a no-op.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE orders (
            order_id       text PRIMARY KEY,
            customer_name  text NOT NULL,
            customer_email text NOT NULL,
            status         text NOT NULL
                CHECK (status IN ('placed', 'shipped', 'delivered', 'cancelled')),
            currency       text NOT NULL DEFAULT 'USD',
            total_cents    bigint NOT NULL CHECK (total_cents >= 0),
            items          jsonb NOT NULL DEFAULT '[]'::jsonb,
            placed_at      timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        """
        CREATE TABLE refunds (
            refund_id       uuid PRIMARY KEY DEFAULT gen_random_uuid(),
            order_id        text NOT NULL REFERENCES orders (order_id),
            amount_cents    bigint NOT NULL CHECK (amount_cents > 0),
            currency        text NOT NULL,
            reason          text NOT NULL,
            idempotency_key text NOT NULL UNIQUE,
            thread_id       text NOT NULL,
            requested_by    text,
            approved_by     text,
            approval        jsonb,
            created_at      timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("CREATE INDEX refunds_order_id_idx ON refunds (order_id)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS refunds")
    op.execute("DROP TABLE IF EXISTS orders")
