"""API keys and threads (the HTTP service's identity and ownership tables).

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02

Keys are stored as sha256(secret) hex; threads belong to (tenant_id, owner_id).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("auth_threads",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE api_keys (
            key_id     text PRIMARY KEY,
            key_hash   text NOT NULL,
            user_id    text NOT NULL,
            tenant_id  text NOT NULL,
            role       text NOT NULL CHECK (role IN ('user', 'approver', 'admin')),
            created_at timestamptz NOT NULL DEFAULT now(),
            revoked_at timestamptz
        )
        """
    )
    op.execute(
        """
        CREATE TABLE threads (
            thread_id  uuid PRIMARY KEY,
            tenant_id  text NOT NULL,
            owner_id   text NOT NULL,
            metadata   jsonb NOT NULL DEFAULT '{}'::jsonb,
            status     text NOT NULL DEFAULT 'idle'
                CHECK (status IN ('idle', 'busy', 'interrupted', 'error')),
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute(
        "CREATE INDEX threads_tenant_owner_updated_idx"
        " ON threads (tenant_id, owner_id, updated_at DESC)"
    )
    op.execute("CREATE INDEX threads_metadata_idx ON threads USING gin (metadata jsonb_path_ops)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS threads")
    op.execute("DROP TABLE IF EXISTS api_keys")
