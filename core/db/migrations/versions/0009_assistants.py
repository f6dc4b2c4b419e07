"""Assistants: versioned configurations of the served graph, per tenant.

Revision ID: 0009
Revises: 0001
Create Date: 2026-12-10

An assistant belongs to one tenant; its key is (tenant_id, assistant_id), so two tenants may
pick the same id without learning of each other. `assistants` holds the latest version (the
one runs use), `assistant_versions` every version ever written; the deferred foreign key
from the latest version to its row in `assistant_versions` makes an assistant without its
version row impossible. The system assistant (`agent`) is not stored: it is the same for
every tenant and read-only (`server.assistants_repo`).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("assistants",)
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE assistants (
            tenant_id    text NOT NULL,
            assistant_id uuid NOT NULL,
            graph_id     text NOT NULL,
            name         text NOT NULL,
            description  text,
            config       jsonb NOT NULL DEFAULT '{}'::jsonb,
            context      jsonb NOT NULL DEFAULT '{}'::jsonb,
            metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
            version      integer NOT NULL DEFAULT 1 CHECK (version >= 1),
            owner        text NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            updated_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, assistant_id)
        )
        """
    )
    op.execute(
        """
        CREATE TABLE assistant_versions (
            tenant_id    text NOT NULL,
            assistant_id uuid NOT NULL,
            version      integer NOT NULL CHECK (version >= 1),
            graph_id     text NOT NULL,
            name         text NOT NULL,
            description  text,
            config       jsonb NOT NULL DEFAULT '{}'::jsonb,
            context      jsonb NOT NULL DEFAULT '{}'::jsonb,
            metadata     jsonb NOT NULL DEFAULT '{}'::jsonb,
            created_at   timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (tenant_id, assistant_id, version),
            FOREIGN KEY (tenant_id, assistant_id)
                REFERENCES assistants (tenant_id, assistant_id) ON DELETE CASCADE
        )
        """
    )
    op.execute(
        "ALTER TABLE assistants ADD CONSTRAINT assistants_latest_version_fkey"
        " FOREIGN KEY (tenant_id, assistant_id, version)"
        " REFERENCES assistant_versions (tenant_id, assistant_id, version)"
        " DEFERRABLE INITIALLY DEFERRED"
    )
    op.execute("CREATE INDEX assistants_tenant_created_idx ON assistants (tenant_id, created_at)")
    op.execute(
        "CREATE INDEX assistants_metadata_idx ON assistants USING gin (metadata jsonb_path_ops)"
    )


def downgrade() -> None:
    op.execute("ALTER TABLE assistants DROP CONSTRAINT IF EXISTS assistants_latest_version_fkey")
    op.execute("DROP TABLE IF EXISTS assistant_versions")
    op.execute("DROP TABLE IF EXISTS assistants")
