"""API keys: `stw_<key_id>_<secret>`, stored as sha256(secret), verified in constant time.

Only the hash is stored; the full key is returned once by `KeyStore.create`. Verified keys are
cached in-process for `cache_ttl_s` seconds (default 10), so a revocation made by another
process takes effect within that time (a revocation through the same `KeyStore` is immediate).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict, cast, get_args

from core.errors import StewardError
from core.identity import Principal, Role

if TYPE_CHECKING:
    from core.db.pool import DbPool
    from core.settings import Settings

logger = logging.getLogger(__name__)

KEY_PREFIX = "stw"
KEY_RE = re.compile(r"^stw_(?P<key_id>[0-9a-f]{8})_(?P<secret>[A-Za-z0-9_-]{32})$")
"""`stw_` + 8 hex key id + `_` + 32 urlsafe characters."""
ROLES: tuple[Role, ...] = get_args(Role)
DEV_USER = "local"
DEV_TENANT = "default"
DEV_KEY_FILE = "dev-api-key"


class KeyInfo(TypedDict):
    """A key as listed by `KeyStore.list` (never the secret or its hash)."""

    key_id: str
    user_id: str
    tenant_id: str
    role: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class ParsedKey:
    """The two halves of a raw key."""

    key_id: str
    secret: str


def hash_secret(secret: str) -> str:
    """Return the stored form of a secret: its sha256 as lowercase hex."""
    return hashlib.sha256(secret.encode()).hexdigest()


def generate_key() -> tuple[str, ParsedKey]:
    """Return a fresh raw key and its parts."""
    parsed = ParsedKey(key_id=secrets.token_hex(4), secret=secrets.token_urlsafe(24))
    return f"{KEY_PREFIX}_{parsed.key_id}_{parsed.secret}", parsed


def parse_key(raw: str) -> ParsedKey | None:
    """Split a raw key into key id and secret; None if it is not shaped like one of ours."""
    match = KEY_RE.match(raw.strip())
    if match is None:
        return None
    return ParsedKey(key_id=match["key_id"], secret=match["secret"])


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Compare a presented secret with a stored hash in constant time."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


class KeyStore:
    """The `api_keys` table, with a short in-process cache of verified keys."""

    def __init__(
        self,
        pool: DbPool,
        *,
        cache_ttl_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._pool = pool
        self._ttl = cache_ttl_s
        self._clock = clock
        self._cache: dict[str, tuple[float, Principal]] = {}

    async def create(self, user_id: str, tenant_id: str, role: Role) -> str:
        """Create a key and return it; only its hash is stored, so this is the only copy.

        Raises:
            ValueError: unknown role or empty user/tenant.
        """
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        if not user_id or not tenant_id:
            raise ValueError("user_id and tenant_id must not be empty")
        raw, parsed = generate_key()
        async with self._pool.connection() as conn:
            await conn.execute(
                "INSERT INTO api_keys (key_id, key_hash, user_id, tenant_id, role)"
                " VALUES (%s, %s, %s, %s, %s)",
                (parsed.key_id, hash_secret(parsed.secret), user_id, tenant_id, role),
            )
        logger.info("api key %s created for %s@%s (%s)", parsed.key_id, user_id, tenant_id, role)
        return raw

    async def verify(self, raw: str) -> Principal | None:
        """Return the key's principal, or None when it is malformed, unknown or revoked."""
        parsed = parse_key(raw)
        if parsed is None:
            return None
        now = self._clock()
        cached = self._cache.get(raw)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT key_id, key_hash, user_id, tenant_id, role FROM api_keys"
                " WHERE key_id = %s AND revoked_at IS NULL",
                (parsed.key_id,),
            )
            row = await cur.fetchone()
        if row is None or not secret_matches(parsed.secret, row["key_hash"]):
            self._cache.pop(raw, None)
            return None
        principal = principal_of(row)
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[raw] = (now + self._ttl, principal)
        return principal

    async def list(self) -> list[KeyInfo]:
        """Return every key (active and revoked), oldest first."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT key_id, user_id, tenant_id, role, created_at, revoked_at"
                " FROM api_keys ORDER BY created_at, key_id"
            )
            rows = await cur.fetchall()
        return [cast(KeyInfo, dict(r)) for r in rows]

    async def revoke(self, key_id: str) -> bool:
        """Revoke a key; True if an active key was revoked, False if none matched."""
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "UPDATE api_keys SET revoked_at = now() WHERE key_id = %s AND revoked_at IS NULL",
                (key_id,),
            )
            revoked = cur.rowcount > 0
        for raw, (_, principal) in list(self._cache.items()):
            if principal.key_id == key_id:
                self._cache.pop(raw, None)
        if revoked:
            logger.info("api key %s revoked", key_id)
        return revoked

    async def count_active(self) -> int:
        """Return how many keys are not revoked."""
        async with self._pool.connection() as conn:
            cur = await conn.execute("SELECT count(*) AS n FROM api_keys WHERE revoked_at IS NULL")
            row = await cur.fetchone()
        return int(row["n"]) if row else 0


class NoApiKeys(StewardError, RuntimeError):
    """Production refuses to start without at least one API key."""


def _write_dev_key(path: Path, raw: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(raw + "\n")
    path.chmod(0o600)


async def ensure_dev_key(store: KeyStore, settings: Settings) -> str | None:
    """Make sure the service can be called; return the new development key, if one was made.

    In development with no active key, create an admin key for `local@default`, print it once
    to stderr and write it to `$STEWARD_HOME/dev-api-key` (mode 0600).

    Raises:
        NoApiKeys: production with no active key.
    """
    if await store.count_active() > 0:
        return None
    if settings.env == "production":
        raise NoApiKeys("no API key exists: create one with `steward keys create` first")
    raw = await store.create(DEV_USER, DEV_TENANT, "admin")
    path = settings.home / DEV_KEY_FILE
    await asyncio.to_thread(_write_dev_key, path, raw)
    print(  # noqa: T201  # shown once, on purpose, to the operator
        f"\nSteward development API key (admin, {DEV_USER}@{DEV_TENANT}): {raw}\nsaved to {path}\n",
        file=sys.stderr,
        flush=True,
    )
    return raw


def principal_of(row: Mapping[str, Any]) -> Principal:
    """The principal of an `api_keys` row (`key_id`, `user_id`, `tenant_id`, `role`)."""
    return Principal(
        key_id=row["key_id"],
        user_id=row["user_id"],
        tenant_id=row["tenant_id"],
        role=cast(Role, row["role"]),
    )


def role_of(value: Any) -> Role:
    """Validate a role string.

    Raises:
        ValueError: not one of `user`, `approver`, `admin`.
    """
    if value not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}, not {value!r}")
    return cast(Role, value)


__all__ = [
    "DEV_KEY_FILE",
    "KeyInfo",
    "KeyStore",
    "NoApiKeys",
    "ParsedKey",
    "ensure_dev_key",
    "generate_key",
    "hash_secret",
    "parse_key",
    "role_of",
    "secret_matches",
]
