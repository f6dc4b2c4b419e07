"""The approval queue: one row per pending approval interrupt, decided exactly once.

Revision ID: 0004
Revises: 0001
Create Date: 2025-01-04

Depends on 0002 (threads): an approval disappears with its thread.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("approvals",)
depends_on: str | Sequence[str] | None = ("0002",)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE approvals (
            approval_id   uuid PRIMARY KEY,
            thread_id     uuid NOT NULL REFERENCES threads (thread_id) ON DELETE CASCADE,
            run_id        uuid,
            tenant_id     text NOT NULL,
            requester_id  text NOT NULL,
            interrupt_id  text NOT NULL,
            action        jsonb NOT NULL,
            context       jsonb NOT NULL DEFAULT '{}'::jsonb,
            status        text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'approved', 'edited', 'rejected')),
            decision      jsonb,
            decided_by    text,
            decided_at    timestamptz,
            comment       text,
            resume_run_id uuid,
            created_at    timestamptz NOT NULL DEFAULT now(),
            UNIQUE (thread_id, interrupt_id),
            CHECK ((status = 'pending') = (decided_at IS NULL))
        )
        """
    )
    op.execute(
        "CREATE INDEX approvals_tenant_status_created_idx"
        " ON approvals (tenant_id, status, created_at)"
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS approvals")
