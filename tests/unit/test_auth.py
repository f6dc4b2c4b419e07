"""API key format, hashing and verification; principals and visibility (no database)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
import pytest
from litestar import Litestar, Request, get, post
from litestar.datastructures import State
from litestar.di import Provide
from litestar.params import JSONBody
from litestar.testing import TestClient
from psycopg_pool import PoolTimeout
from pydantic import BaseModel

from core.errors import Conflict, TooManyRequests
from core.identity import Principal
from server.auth import PrincipalDep, presented_key, provide_principal, requires_role
from server.errors import EXCEPTION_HANDLERS, MAX_BODY_BYTES
from server.keys import (
    KEY_RE,
    KeyStore,
    generate_key,
    hash_secret,
    parse_key,
    role_of,
    secret_matches,
)


def test_generated_keys_have_the_documented_shape_and_are_unique() -> None:
    raws = {generate_key()[0] for _ in range(200)}
    assert len(raws) == 200
    for raw in raws:
        assert KEY_RE.match(raw), raw
        prefix, key_id, secret = raw.split("_", 2)
        assert prefix == "stw" and len(key_id) == 8 and len(secret) == 32


def test_parse_key_round_trips_and_rejects_garbage() -> None:
    raw, parsed = generate_key()
    assert parse_key(raw) == parsed
    assert parse_key(f"  {raw}\n") == parsed
    for bad in (
        "",
        "stw_",
        "stw_1234567_" + "a" * 32,
        "abc_12345678_" + "a" * 32,
        "stw_12345678_" + "a" * 31,
        "stw_1234567G_" + "a" * 32,
        raw + "x",
    ):
        assert parse_key(bad) is None, bad


def test_only_the_sha256_of_the_secret_is_compared() -> None:
    _, parsed = generate_key()
    stored = hash_secret(parsed.secret)
    assert stored == hashlib.sha256(parsed.secret.encode()).hexdigest()
    assert parsed.secret not in stored
    assert secret_matches(parsed.secret, stored)
    assert not secret_matches(parsed.secret[:-1] + "A", stored)
    assert not secret_matches(parsed.secret, hash_secret("other"))


def test_role_of() -> None:
    assert role_of("approver") == "approver"
    with pytest.raises(ValueError, match="role must be one of"):
        role_of("root")


def test_visibility_rules() -> None:
    user = Principal("k1", "alice", "acme", "user")
    approver = Principal("k2", "bob", "acme", "approver")
    admin = Principal("k3", "carol", "acme", "admin")
    assert user.can_see("alice", "acme")
    assert not user.can_see("dave", "acme"), "a user sees only its own threads"
    assert not user.can_see("alice", "globex"), "never across tenants"
    assert approver.can_see("dave", "acme") and admin.can_see("dave", "acme")
    assert not approver.can_see("dave", "globex") and not admin.can_see("dave", "globex")
    assert not user.is_approver and approver.is_approver and admin.is_approver


def _request(headers: dict[str, str]) -> Request[Any, Any, Any]:
    scope: Any = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "state": {},
    }
    return Request(scope)


def test_key_is_read_from_x_api_key_or_bearer() -> None:
    assert presented_key(_request({"x-api-key": "stw_k"})) == "stw_k"
    assert presented_key(_request({"Authorization": "Bearer stw_b"})) == "stw_b"
    assert presented_key(_request({"Authorization": "bearer  stw_b "})) == "stw_b"
    assert presented_key(_request({"Authorization": "Basic dXNlcg=="})) is None
    assert presented_key(_request({})) is None


class FakeCursor:
    def __init__(self, row: dict[str, Any] | None, rowcount: int = 0) -> None:
        self.row = row
        self.rowcount = rowcount

    async def fetchone(self) -> dict[str, Any] | None:
        return self.row


class FakeConn:
    def __init__(self, db: FakeDb) -> None:
        self.db = db

    async def execute(self, query: str, params: tuple[Any, ...] = ()) -> FakeCursor:
        self.db.queries += 1
        if query.startswith("INSERT"):
            key_id, key_hash, user_id, tenant_id, role = params
            self.db.rows[key_id] = {
                "key_id": key_id,
                "key_hash": key_hash,
                "user_id": user_id,
                "tenant_id": tenant_id,
                "role": role,
                "revoked": False,
            }
            return FakeCursor(None, 1)
        if query.startswith("SELECT"):
            row = self.db.rows.get(params[0])
            return FakeCursor(row if row and not row["revoked"] else None)
        if query.startswith("UPDATE"):
            row = self.db.rows.get(params[0])
            if row and not row["revoked"]:
                row["revoked"] = True
                return FakeCursor(None, 1)
            return FakeCursor(None, 0)
        raise AssertionError(query)


class FakeDb:
    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.queries = 0

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[FakeConn]:
        yield FakeConn(self)


async def test_keystore_stores_hashes_verifies_caches_and_revokes() -> None:
    db = FakeDb()
    store = KeyStore(db, cache_ttl_s=60)  # type: ignore[arg-type]
    raw = await store.create("alice", "acme", "approver")
    [row] = db.rows.values()
    assert raw.split("_", 2)[2] not in str(row), "the secret itself is never stored"

    principal = await store.verify(raw)
    assert principal == Principal(row["key_id"], "alice", "acme", "approver")
    before = db.queries
    assert await store.verify(raw) == principal
    assert db.queries == before, "a verified key is cached"

    wrong_secret = raw[:-1] + ("A" if raw[-1] != "A" else "B")
    assert await store.verify(wrong_secret) is None
    assert await store.verify("stw_deadbeef_" + "x" * 32) is None
    assert await store.verify("garbage") is None

    assert await store.revoke(row["key_id"]) is True
    assert await store.verify(raw) is None, "revocation through the same store is immediate"
    assert await store.revoke(row["key_id"]) is False


async def test_keystore_cache_expires() -> None:
    db = FakeDb()
    now = [1000.0]
    store = KeyStore(db, cache_ttl_s=5, clock=lambda: now[0])  # type: ignore[arg-type]
    raw = await store.create("alice", "acme", "user")
    assert await store.verify(raw) is not None
    db.rows[raw.split("_")[1]]["revoked"] = True  # revoked by another process
    assert await store.verify(raw) is not None, "still cached"
    now[0] += 6
    assert await store.verify(raw) is None, "the cache expired and the revocation is seen"


async def test_keystore_refuses_bad_roles() -> None:
    store = KeyStore(FakeDb())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="role"):
        await store.create("alice", "acme", "root")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        await store.create("", "acme", "user")


# --- the error mapping every route shares (server/errors.py) --------------------------------


class _Body(BaseModel):
    limit: int


@get("/db-down")
async def _db_down() -> None:
    raise psycopg.OperationalError("connection refused")


@get("/pool-timeout")
async def _pool_timeout() -> None:
    raise PoolTimeout("couldn't get a connection after 10.00 sec")


@get("/bug")
async def _bug() -> None:
    raise RuntimeError("secret internals")


@get("/busy")
async def _busy() -> None:
    raise Conflict("thread is busy")


@get("/slow-down")
async def _slow_down() -> None:
    raise TooManyRequests(retry_after=7)


@post("/body")
async def _body(data: JSONBody[_Body]) -> int:
    return data.limit


@get("/me")
async def _me(principal: PrincipalDep) -> str:
    return principal.user_id


@get("/staff", guards=[requires_role("approver", "admin")])
async def _staff() -> str:
    return "ok"


class _Keys:
    async def verify(self, raw: str) -> Principal | None:
        return {
            "user-key": Principal("k1", "u", "t", "user"),
            "admin-key": Principal("k2", "a", "t", "admin"),
        }.get(raw)


def _error_app() -> Litestar:
    return Litestar(
        [_db_down, _pool_timeout, _bug, _busy, _slow_down, _body, _me, _staff],
        exception_handlers=EXCEPTION_HANDLERS,
        request_max_body_size=MAX_BODY_BYTES,
        dependencies={"principal": Provide(provide_principal)},
        state=State({"key_store": _Keys()}),
        logging_config=None,
    )


def test_errors_map_to_detail_bodies(caplog: pytest.LogCaptureFixture) -> None:
    with TestClient(_error_app()) as client:
        down = client.get("/db-down")
        assert down.status_code == 503 and "database" in down.json()["detail"]
        assert client.get("/pool-timeout").status_code == 503
        bug = client.get("/bug")
        assert bug.status_code == 500 and bug.json() == {"detail": "internal error"}
        assert "secret internals" in caplog.text, "the traceback is logged, not returned"
        assert client.get("/busy").json() == {"detail": "thread is busy"}
        slow = client.get("/slow-down")
        assert slow.status_code == 429 and slow.headers["retry-after"] == "7"
        missing = client.get("/nope")
        assert missing.status_code == 404 and "detail" in missing.json()

        invalid = client.post("/body", json={"limit": "many"})
        assert invalid.status_code == 422
        assert "limit" in invalid.json()["detail"]
        malformed = client.post("/body", content=b"{", headers={"content-type": "application/json"})
        assert malformed.status_code == 422 and "malformed JSON" in malformed.json()["detail"]
        huge = client.post(
            "/body", content=b"1" * (2 * 1024 * 1024), headers={"content-type": "application/json"}
        )
        assert huge.status_code == 413

        assert client.get("/me").status_code == 401
        assert client.get("/me", headers={"x-api-key": "wrong"}).status_code == 401
        assert client.get("/me", headers={"Authorization": "Bearer user-key"}).text == "u"
        assert client.get("/staff").status_code == 401
        denied = client.get("/staff", headers={"x-api-key": "user-key"})
        assert denied.status_code == 403 and "approver" in denied.json()["detail"]
        assert client.get("/staff", headers={"x-api-key": "admin-key"}).status_code == 200
