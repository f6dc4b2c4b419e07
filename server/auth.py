"""Who is calling: `Principal`, the app-wide `principal` dependency and role guards.

A request authenticates with `x-api-key: <key>` or `Authorization: Bearer <key>`; the key is
verified by the `KeyStore` on `app.state.key_store`. Visibility rules live in `Principal.can_see`:
`user` sees only its own threads, `approver` and `admin` every thread of their tenant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from core.errors import Forbidden, Unauthorized
from core.identity import Principal, Role

if TYPE_CHECKING:
    from server.keys import KeyStore

_STATE_KEY = "steward_principal"


def presented_key(connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
    """Return the key from `x-api-key` or `Authorization: Bearer`, if any."""
    key = connection.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = connection.headers.get("authorization")
    if auth:
        scheme, _, token = auth.partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


async def authenticate(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """Verify the request's key once per request and return its principal.

    Raises:
        Unauthorized: no key, or a malformed, unknown or revoked one.
    """
    cached = connection.scope.get("state", {}).get(_STATE_KEY)
    if isinstance(cached, Principal):
        return cached
    raw = presented_key(connection)
    if raw is None:
        raise Unauthorized("missing API key: send `x-api-key: <key>` or `Authorization: Bearer`")
    store: KeyStore = connection.app.state.key_store
    principal = await store.verify(raw)
    if principal is None:
        raise Unauthorized("invalid or revoked API key")
    connection.scope.setdefault("state", {})[_STATE_KEY] = principal
    return principal


def act_as(connection: ASGIConnection[Any, Any, Any, Any], principal: Principal) -> None:
    """Record who a request acts as when it authenticated otherwise than by a key header.

    The inbox (`server.inbox`) signs a browser in with a session cookie; once it has found the
    session's principal, `authenticate`, `requires_role` and the `principal` dependency see
    that principal, so the inbox passes the same guards as the API.
    """
    connection.scope.setdefault("state", {})[_STATE_KEY] = principal


async def provide_principal(request: Request[Any, Any, Any]) -> Principal:
    """Litestar dependency `principal`: the authenticated caller (401 otherwise)."""
    return await authenticate(request)


PrincipalDep: TypeAlias = NamedDependency[Principal]
"""Handler annotation for the app-wide `principal` dependency."""

Guard = Callable[[ASGIConnection[Any, Any, Any, Any], BaseRouteHandler], Awaitable[None]]


def requires_role(*roles: Role) -> Guard:
    """Build a guard that lets only the given roles through (401 without a key, else 403)."""
    allowed = frozenset(roles)

    async def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = await authenticate(connection)
        if principal.role not in allowed:
            needed = ", ".join(sorted(allowed))
            raise Forbidden(f"role {principal.role!r} may not do this; needs one of: {needed}")

    return guard


__all__ = [
    "PrincipalDep",
    "act_as",
    "authenticate",
    "presented_key",
    "provide_principal",
    "requires_role",
]
