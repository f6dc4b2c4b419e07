"""Who is calling: `Principal`, the app-wide `principal` dependency and role guards.

A request authenticates with `x-api-key: <key>` or `Authorization: Bearer <key>`; the key is
verified by the `KeyStore` on `app.state.key_store`. Visibility rules live in `Principal.can_see`:
`user` sees only its own threads, `approver` and `admin` every thread of their tenant.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.di import NamedDependency
from litestar.handlers.base import BaseRouteHandler

from server.errors import Forbidden, Unauthorized

if TYPE_CHECKING:
    from server.keys import KeyStore

Role = Literal["user", "approver", "admin"]
"""What a key may do: `user` (own threads), `approver` (+ decisions), `admin` (+ all tenants'
approvals list filter)."""

_STATE_KEY = "steward_principal"


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller, from a verified API key."""

    key_id: str
    user_id: str
    tenant_id: str
    role: Role

    @property
    def is_approver(self) -> bool:
        """True for roles that may decide approvals (`approver`, `admin`)."""
        return self.role in ("approver", "admin")

    @property
    def is_admin(self) -> bool:
        """True for `admin`."""
        return self.role == "admin"

    def can_see(self, owner_id: str, tenant_id: str) -> bool:
        """Whether a resource owned by `owner_id` in `tenant_id` is visible to this caller."""
        if tenant_id != self.tenant_id:
            return False
        return self.role != "user" or owner_id == self.user_id


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


__all__ = ["Principal", "PrincipalDep", "Role", "authenticate", "presented_key",
           "provide_principal", "requires_role"]
