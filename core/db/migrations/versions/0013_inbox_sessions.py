"""Sessions of the approval inbox (`/inbox`): one row per signed-in browser.

Revision ID: 0013
Revises: 0001
Depends on: 0002 (api_keys)
Create Date: 2026-12-03

The browser holds a random token in an HTTP-only cookie; only its sha256 is stored here
(`session_hash`), so a copy of the table signs nobody in. A session acts as the API key it
was opened with: revoking or deleting that key ends its sessions (the lookup joins
`api_keys` on `revoked_at IS NULL`; `ON DELETE CASCADE`). `csrf_token` is the session's
synchronizer token, which every POST of the inbox must carry. Rows live in Postgres, not in
a process, so any replica serves any signed-in browser.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = ("inbox_sessions",)
depends_on: str | Sequence[str] | None = "0002"


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE inbox_sessions (
            session_hash text PRIMARY KEY,
            key_id       text NOT NULL REFERENCES api_keys (key_id) ON DELETE CASCADE,
            csrf_token   text NOT NULL,
            created_at   timestamptz NOT NULL DEFAULT now(),
            expires_at   timestamptz NOT NULL
        )
        """
    )
    op.execute("CREATE INDEX inbox_sessions_expires_at ON inbox_sessions (expires_at)")
    op.execute("CREATE INDEX inbox_sessions_key_id ON inbox_sessions (key_id)")


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS inbox_sessions")
