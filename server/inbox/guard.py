"""Who a browser is: the session cookie, the CSRF check, and the cookies the inbox sets.

- Session: an HTTP-only cookie `steward_inbox` (`Path=/inbox`, `SameSite=Strict`, `Secure`
  when the request came over https) holding a random token; `session_guard` finds its row
  (`server.inbox.sessions`) and makes the request act as the session's key
  (`server.auth.act_as`), so the API's own `requires_role` guard and `principal` dependency
  apply unchanged.
- CSRF: a synchronizer token. Each session has a random `csrf_token`, put in every form (a
  hidden `csrf_token` field) and in every htmx request (`X-CSRF-Token`, from `hx-headers` on
  the page body); `session_guard` refuses a POST that carries neither or a wrong one (403)
  before the handler runs. SameSite=Strict already keeps the cookie off cross-site requests;
  the token is the check that does not depend on the browser.
- Sign-in form: there is no session yet, so it is a double-submit token: the form's hidden
  field must equal the `steward_inbox_login` cookie set when the form was served.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from litestar import Request, Response
from litestar.connection import ASGIConnection
from litestar.datastructures import Cookie
from litestar.handlers.base import BaseRouteHandler

from core.errors import Forbidden, Unauthorized, Unavailable
from server.auth import act_as
from server.inbox.sessions import SESSION_TTL, InboxSession, SessionStore

INBOX_PATH = "/inbox"
"""Where the inbox lives; its cookies are scoped to this path."""
SESSION_COOKIE = "steward_inbox"
LOGIN_COOKIE = "steward_inbox_login"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
LOGIN_FORM_TTL_S = 3600
"""A sign-in form older than this has to be reloaded."""
_SESSION_STATE = "steward_inbox_session"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotSignedIn(Unauthorized):
    """No live session: the browser goes to the sign-in page."""

    default_detail = "sign in to use the approval inbox"


def session_store(connection: ASGIConnection[Any, Any, Any, Any]) -> SessionStore:
    """The session table of the app's database (503 while the service starts)."""
    runtime = connection.app.state.get("runtime")
    if runtime is None:
        raise Unavailable("service is starting")
    return SessionStore(runtime.pool)


def is_htmx(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """True for a request htmx sent (it answers with a fragment, not a page)."""
    return connection.headers.get("hx-request") == "true"


def is_https(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """True when the browser reached us over https (uvicorn applies trusted proxy headers)."""
    return connection.url.scheme == "https"


def secure_cookies(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """Cookies are `Secure` over https, and always in production.

    Behind a TLS proxy whose address uvicorn does not trust, the scheme reads `http`, and a
    session cookie must still never travel in clear.
    """
    runtime = connection.app.state.get("runtime")
    production = runtime is not None and runtime.deps.settings.env == "production"
    return production or is_https(connection)


def tokens_match(presented: str | None, expected: str | None) -> bool:
    """Compare two tokens in constant time; a missing one never matches."""
    if not presented or not expected:
        return False
    return hmac.compare_digest(presented.encode(), expected.encode())


async def presented_csrf(request: Request[Any, Any, Any]) -> str | None:
    """The CSRF token a POST carries: the `X-CSRF-Token` header, else the form field.

    Litestar keeps the parsed form on the connection, so the handler reads it again for free.
    """
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type, _ = request.content_type
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        return None
    value = (await request.form()).get(CSRF_FIELD)
    return value if isinstance(value, str) else None


async def session_guard(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """Let a signed-in browser through as its key's principal; check CSRF on POSTs.

    Raises:
        NotSignedIn: no cookie, or its session is unknown, expired or its key revoked.
        Forbidden: a POST without the session's CSRF token.
    """
    session = await session_store(connection).find(connection.cookies.get(SESSION_COOKIE))
    if session is None:
        raise NotSignedIn()
    act_as(connection, session.principal)
    connection.scope.setdefault("state", {})[_SESSION_STATE] = session
    if connection.scope.get("method", "GET") in _SAFE_METHODS:
        return
    request = (
        connection
        if isinstance(connection, Request)
        else Request[Any, Any, Any](connection.scope, connection.receive)
    )
    if not tokens_match(await presented_csrf(request), session.csrf_token):
        raise Forbidden("the page's security token is missing or stale: reload the page")


def signed_in(connection: ASGIConnection[Any, Any, Any, Any]) -> InboxSession | None:
    """The session `session_guard` found for this request, if it found one."""
    session = connection.scope.get("state", {}).get(_SESSION_STATE)
    return session if isinstance(session, InboxSession) else None


def current_session(connection: ASGIConnection[Any, Any, Any, Any]) -> InboxSession:
    """The session `session_guard` found for this request.

    Raises:
        NotSignedIn: the route is not behind `session_guard`.
    """
    session = signed_in(connection)
    if session is None:
        raise NotSignedIn()
    return session


def _cookie(
    connection: ASGIConnection[Any, Any, Any, Any], key: str, value: str, max_age: int
) -> Cookie:
    return Cookie(
        key=key,
        value=value,
        path=INBOX_PATH,
        max_age=max_age,
        httponly=True,
        secure=secure_cookies(connection),
        samesite="strict",
    )


def set_session_cookie(
    response: Response[Any], connection: ASGIConnection[Any, Any, Any, Any], token: str
) -> None:
    """Give the browser its session (and drop the sign-in form's token)."""
    response.set_cookie(
        _cookie(connection, SESSION_COOKIE, token, int(SESSION_TTL.total_seconds()))
    )
    response.set_cookie(_cookie(connection, LOGIN_COOKIE, "", 0))


def clear_session_cookie(
    response: Response[Any], connection: ASGIConnection[Any, Any, Any, Any]
) -> None:
    """Make the browser forget its session cookie."""
    response.set_cookie(_cookie(connection, SESSION_COOKIE, "", 0))


def new_login_token() -> str:
    """A fresh token for one sign-in form."""
    return secrets.token_urlsafe(32)


def set_login_cookie(
    response: Response[Any], connection: ASGIConnection[Any, Any, Any, Any], token: str
) -> None:
    """The double-submit half of the sign-in form's token."""
    response.set_cookie(_cookie(connection, LOGIN_COOKIE, token, LOGIN_FORM_TTL_S))


__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "INBOX_PATH",
    "LOGIN_COOKIE",
    "SESSION_COOKIE",
    "NotSignedIn",
    "clear_session_cookie",
    "current_session",
    "is_htmx",
    "new_login_token",
    "session_guard",
    "session_store",
    "set_login_cookie",
    "set_session_cookie",
    "signed_in",
    "tokens_match",
]
