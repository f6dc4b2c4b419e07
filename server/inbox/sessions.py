"""Inbox sessions in Postgres (`inbox_sessions`, revision 0013): open, find, close.

Why a server-side session and not a signed cookie: Postgres is the single source of truth and
every replica shares it, so a row serves any replica without a shared secret to distribute
and rotate; signing out or revoking the API key ends the session at once, everywhere (a
signed cookie stays valid until it expires); and the browser never holds the API key, not
even encrypted. The cost is one indexed query per inbox request.

The cookie holds a random 256-bit token; the table holds its sha256 only. A session acts as
the key it was opened with, read again on every request: a revoked key signs its sessions
out, and the role is the key's.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from core.identity import Principal
from server.keys import principal_of

if TYPE_CHECKING:
    from core.db.pool import DbPool

logger = logging.getLogger(__name__)

SESSION_TTL = timedelta(hours=8)
"""How long a sign-in lasts (a working day); then the approver signs in again."""
MAX_TOKEN_CHARS = 128
"""Longer cookie values are not looked up (a token is 43 characters)."""


@dataclass(frozen=True, slots=True)
class InboxSession:
    """A signed-in browser: who it acts as and the token its forms must carry."""

    principal: Principal
    csrf_token: str
    expires_at: datetime


def token_hash(token: str) -> str:
    """The stored form of a session token: its sha256 as lowercase hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class SessionStore:
    """The `inbox_sessions` table."""

    def __init__(self, pool: DbPool, *, ttl: timedelta = SESSION_TTL) -> None:
        self._pool = pool
        self._ttl = ttl

    async def open(self, principal: Principal) -> tuple[str, InboxSession]:
        """Start a session for a verified key; return the cookie's token and the session.

        Expired sessions are deleted on the way (sign-ins are rare, so this stays cheap).
        """
        token = secrets.token_urlsafe(32)
        csrf = secrets.token_urlsafe(32)
        async with self._pool.connection() as conn:
            await conn.execute("DELETE FROM inbox_sessions WHERE expires_at < now()")
            cur = await conn.execute(
                "INSERT INTO inbox_sessions (session_hash, key_id, csrf_token, expires_at)"
                " VALUES (%s, %s, %s, now() + %s) RETURNING expires_at",
                (token_hash(token), principal.key_id, csrf, self._ttl),
            )
            row = await cur.fetchone()
        assert row is not None
        logger.info(
            "inbox session opened for %s@%s (key %s)",
            principal.user_id,
            principal.tenant_id,
            principal.key_id,
        )
        return token, InboxSession(principal, csrf, row["expires_at"])

    async def find(self, token: str | None) -> InboxSession | None:
        """The live session of a cookie's token: unexpired, and its key not revoked."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT s.csrf_token, s.expires_at, k.key_id, k.user_id, k.tenant_id, k.role"
                " FROM inbox_sessions s JOIN api_keys k ON k.key_id = s.key_id"
                " WHERE s.session_hash = %s AND s.expires_at > now()"
                " AND k.revoked_at IS NULL",
                (token_hash(token),),
            )
            row = await cur.fetchone()
        if row is None:
            return None
        return InboxSession(principal_of(row), row["csrf_token"], row["expires_at"])

    async def close(self, token: str | None) -> bool:
        """End a session (sign out); True if one was open."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return False
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM inbox_sessions WHERE session_hash = %s", (token_hash(token),)
            )
            return cur.rowcount > 0


__all__ = ["MAX_TOKEN_CHARS", "SESSION_TTL", "InboxSession", "SessionStore", "token_hash"]
