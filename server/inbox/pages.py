"""Rendering: the Jinja environment, page responses and the inbox's error pages.

Templates are read once, when the app is built (`inbox_template_config`), into a
`DictLoader`: rendering then never touches the disk on the event loop. Autoescape is on and
undefined names raise. Errors on inbox routes become a page (or, for htmx, a message swapped
into the page's `#flash` area) with the status the API would answer: a refusal's own
(401 → the sign-in page, 403, 404, 409, 422), 503 when the database is unreachable; an
unexpected error is logged and shown as a 500 page without details.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import psycopg
from jinja2 import DictLoader, Environment, StrictUndefined
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.template.config import TemplateConfig
from litestar.types import ExceptionHandlersMap
from psycopg_pool import PoolTimeout

from core.errors import Refused, Unavailable
from server.errors import status_of, validation_detail
from server.inbox.guard import INBOX_PATH, NotSignedIn, is_htmx, signed_in

logger = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
LOGIN_PATH = f"{INBOX_PATH}/login"
STATIC_PATH = f"{INBOX_PATH}/static"

SECURITY_HEADERS = {
    # Only our own files: no inline script or style, no framing (an approve button must not
    # be clickable from another site), forms post back to us only.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Sent with every inbox page and fragment."""


def template_environment(directory: Path = TEMPLATES_DIR) -> Environment:
    """A Jinja environment holding every template of `directory` in memory."""
    sources = {
        path.relative_to(directory).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(directory.rglob("*.html"))
    }
    return Environment(
        loader=DictLoader(sources),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def inbox_template_config() -> TemplateConfig[JinjaTemplateEngine]:
    """The app's template config (Litestar's Jinja engine over the in-memory templates)."""
    return TemplateConfig(instance=JinjaTemplateEngine.from_environment(template_environment()))


def base_context(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """What every page's layout needs: who is signed in and the CSRF token (if anyone is)."""
    session = signed_in(request)
    if session is None:
        return {"principal": None, "csrf_token": "", "static": STATIC_PATH}
    return {"principal": session.principal, "csrf_token": session.csrf_token, "static": STATIC_PATH}


def page(
    request: Request[Any, Any, Any],
    template: str,
    status_code: int = 200,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> Template:
    """Render `template` with the layout's context, `context` and the security headers."""
    return Template(
        template_name=template,
        context={**base_context(request), **context},
        status_code=status_code,
        headers={**SECURITY_HEADERS, **(headers or {})},
    )


def flash(
    request: Request[Any, Any, Any], message: str, *, kind: str, status_code: int
) -> Template:
    """An htmx answer that puts `message` into the page's `#flash` area, whatever it targeted."""
    return page(
        request,
        "_flash.html",
        status_code=status_code,
        headers={"HX-Retarget": "#flash", "HX-Reswap": "innerHTML"},
        kind=kind,
        message=message,
    )


def _status_and_message(request: Request[Any, Any, Any], exc: Exception) -> tuple[int, str]:
    if isinstance(exc, Refused):
        return status_of(exc), exc.detail
    if isinstance(exc, ValidationException):
        return 422, validation_detail(exc)
    if isinstance(exc, (psycopg.OperationalError, PoolTimeout)):
        logger.warning("database unavailable: %s: %s", type(exc).__name__, exc)
        return 503, Unavailable.default_detail
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        return exc.status_code, exc.detail
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return 500, "Something went wrong on our side; it was logged. Try again in a moment."


def inbox_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Show an error on the inbox as a page, or as a flash message for htmx."""
    if isinstance(exc, NotSignedIn):
        if is_htmx(request):
            return Response(
                content="", status_code=401, headers={**SECURITY_HEADERS, "HX-Redirect": LOGIN_PATH}
            )
        return Redirect(LOGIN_PATH, status_code=303, headers=SECURITY_HEADERS)
    status, message = _status_and_message(request, exc)
    if is_htmx(request):
        return flash(request, message, kind="error", status_code=status)
    return page(request, "error.html", status_code=status, status=status, message=message)


INBOX_EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    Refused: inbox_error_handler,
    ValidationException: inbox_error_handler,
    HTTPException: inbox_error_handler,
    psycopg.OperationalError: inbox_error_handler,
    PoolTimeout: inbox_error_handler,
    Exception: inbox_error_handler,
}
"""The inbox router's handlers: every error of an inbox route is shown as a page."""


__all__ = [
    "INBOX_EXCEPTION_HANDLERS",
    "LOGIN_PATH",
    "SECURITY_HEADERS",
    "STATIC_DIR",
    "STATIC_PATH",
    "TEMPLATES_DIR",
    "flash",
    "inbox_error_handler",
    "inbox_template_config",
    "page",
    "template_environment",
]
