"""The approval inbox: server-rendered pages at `/inbox` for people who decide approvals.

Jinja templates (Litestar's template support) with htmx 2 for partial updates, both served
by Steward itself (htmx is vendored under `static/` with its licence: no CDN, no build
step); every form also works without JavaScript. Sign-in takes an API key and opens a
server-side session in Postgres (`sessions`); the session cookie is HTTP-only and
SameSite=Strict, and every POST carries the session's CSRF token (`guard`). The pages
decide through the API's own functions (`routes`), so the rules cannot diverge.

Modules: `sessions` (the session table), `guard` (cookie, CSRF, acting as the key),
`views` (what the templates show, pure), `pages` (rendering, error pages), `routes` (the
handlers).
"""

from __future__ import annotations

import mimetypes

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router

from server.inbox.guard import INBOX_PATH
from server.inbox.pages import INBOX_EXCEPTION_HANDLERS, STATIC_DIR, inbox_template_config
from server.inbox.routes import ROUTES


def inbox_router() -> Router:
    """The inbox's pages and its static files (htmx, CSS) under `INBOX_PATH`."""
    mimetypes.init()  # the MIME table is read from disk once, here, not on the event loop
    static = create_static_files_router(
        path="/static",
        directories=[STATIC_DIR],
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=3600, public=True),
        name="inbox_static",
    )
    return Router(
        path=INBOX_PATH,
        route_handlers=[*ROUTES, static],
        exception_handlers=INBOX_EXCEPTION_HANDLERS,
        include_in_schema=False,
    )


__all__ = ["INBOX_PATH", "inbox_router", "inbox_template_config"]
