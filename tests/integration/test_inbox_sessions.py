"""Inbox sessions on Postgres: one acts as its key and ends with it, its expiry or sign-out."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from core.db.pool import DbPool
from server.inbox.sessions import SessionStore, token_hash
from server.keys import KeyStore

pytestmark = pytest.mark.integration


async def test_a_session_acts_as_its_key_until_revoked_or_closed(db_pool: DbPool) -> None:
    keys = KeyStore(db_pool, cache_ttl_s=0)
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    raw = await keys.create("paula", tenant, "approver")
    principal = await keys.verify(raw)
    assert principal is not None
    sessions = SessionStore(db_pool)

    token, opened = await sessions.open(principal)
    found = await sessions.find(token)
    assert found is not None and found.principal == principal
    assert found.csrf_token == opened.csrf_token and len(found.csrf_token) >= 43
    assert raw not in token and principal.key_id not in token
    async with db_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT session_hash FROM inbox_sessions WHERE key_id = %s", (principal.key_id,)
        )
        assert [r["session_hash"] for r in await cur.fetchall()] == [token_hash(token)]

    assert await sessions.find(token + "x") is None
    assert await sessions.find("") is None and await sessions.find("a" * 500) is None

    other, _ = await sessions.open(principal)
    assert await sessions.close(other) and not await sessions.close(other)
    assert await sessions.find(other) is None

    await keys.revoke(principal.key_id)
    assert await sessions.find(token) is None


async def test_an_expired_session_is_gone_and_purged_at_the_next_sign_in(db_pool: DbPool) -> None:
    keys = KeyStore(db_pool)
    principal = await keys.verify(await keys.create("ada", f"t-{uuid.uuid4().hex[:8]}", "admin"))
    assert principal is not None
    stale, _ = await SessionStore(db_pool, ttl=timedelta(seconds=-1)).open(principal)
    assert await SessionStore(db_pool).find(stale) is None
    await SessionStore(db_pool).open(principal)
    async with db_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT 1 FROM inbox_sessions WHERE session_hash = %s", (token_hash(stale),)
        )
        assert await cur.fetchone() is None
