"""The OpenAPI document's error responses and the offline API docs (`/docs`).

Error responses: every route declares the statuses it really answers with `errors(...)`
(or `api_errors(...)` for the authenticated API), each with the one error body of
`server.errors` (`{"detail": "..."}`). Litestar adds a `400` (its `ValidationException`) to
every operation with parameters or a body; this app answers validation failures with 422
(`server.errors.validation_handler`), so `drop_validation_400` removes that entry.

Docs: Swagger UI is served from the files of the `swagger-ui-py` package under
`/docs/assets`, so `/docs` needs no CDN (no internet at run time). That package bundles
Swagger UI 5.x, which renders OpenAPI 3.1 (the version Litestar writes); `swagger-ui-bundle`
1.1.0 bundles 4.15.5, which refuses any `openapi` that is not 3.0.x.
"""

from __future__ import annotations

import importlib.util
import mimetypes
from pathlib import Path
from typing import TypedDict

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.openapi.spec import OpenAPI, Operation
from litestar.static_files import create_static_files_router

DOCS_PATH = "/docs"
"""Where the OpenAPI router serves Swagger UI (`/docs`) and the JSON (`/docs/openapi.json`)."""
DOCS_ASSETS_PATH = f"{DOCS_PATH}/assets"
"""Where Swagger UI's own files (JS, CSS, favicon) are served from."""


class ErrorBody(TypedDict):
    """The body of every error response."""

    detail: str


ERROR_DESCRIPTIONS: dict[int, str] = {
    401: "Missing, unknown or revoked API key (`WWW-Authenticate` names the scheme).",
    403: "The caller's role may not do this.",
    404: "Missing, or not visible to the caller (another tenant's or owner's).",
    409: "Conflicts with the resource's current state (busy thread, already decided, ...).",
    413: "Request body above the 1 MiB limit.",
    422: (
        "Invalid request: a field or parameter fails validation, malformed JSON, NUL "
        "characters, nesting or integers out of range."
    ),
    429: "Rate limited or a budget is spent; `Retry-After` says when to retry.",
    503: "The database is unreachable or the service is starting (`Retry-After` may say when).",
}
"""What each documented error status means on this service."""

EDGE = (422,)
"""Every route: `server.edge` refuses NUL characters in any path or query string."""
AUTHENTICATED = (401, 422, 429, 503)
"""Every authenticated route: no/bad key, edge checks, rate limit, key store unreachable."""
WITH_BODY = (413, 422)
"""Every route that reads a request body."""


def errors(*codes: int) -> dict[int, ResponseSpec]:
    """Document these error statuses, each with the `{"detail": ...}` body.

    Raises:
        KeyError: a status without an entry in `ERROR_DESCRIPTIONS`.
    """
    return {
        code: ResponseSpec(
            data_container=ErrorBody,
            description=ERROR_DESCRIPTIONS[code],
            generate_examples=False,
        )
        for code in sorted(set(codes))
    }


def api_errors(*codes: int, body: bool = False) -> dict[int, ResponseSpec]:
    """`errors` for an authenticated route: `AUTHENTICATED`, `WITH_BODY` if `body`, `codes`."""
    return errors(*AUTHENTICATED, *(WITH_BODY if body else ()), *codes)


_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def drop_validation_400(openapi: OpenAPI) -> None:
    """Remove the `400` Litestar documents for every operation with parameters or a body.

    Litestar adds it for its `ValidationException`; `server.errors` answers those with 422.
    """
    for item in (openapi.paths or {}).values():
        for method in _METHODS:
            operation: Operation | None = getattr(item, method, None)
            if operation is not None and operation.responses:
                operation.responses.pop("400", None)


def swagger_ui_dir() -> Path:
    """The directory of Swagger UI's files in the installed `swagger-ui-py` package.

    Located without importing the package (its `__init__` imports its framework adapters).
    """
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("swagger-ui-py is not installed (a Steward dependency)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def docs_assets_router() -> Router:
    """Serve Swagger UI's files under `DOCS_ASSETS_PATH` (cached for a day).

    Loads the MIME types table now: `mimetypes` reads the system's files on its first use,
    which would otherwise be a blocking read on the event loop (the first asset served).
    """
    mimetypes.init()
    return create_static_files_router(
        path=DOCS_ASSETS_PATH,
        directories=[swagger_ui_dir()],
        include_in_schema=False,
        cache_control=CacheControlHeader(max_age=86_400, public=True),
        name="docs_assets",
    )


def swagger_plugin() -> SwaggerRenderPlugin:
    """Swagger UI at `/docs`, loading its JS, CSS and favicon from `DOCS_ASSETS_PATH`."""
    return SwaggerRenderPlugin(
        path="/",
        js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-bundle.js",
        css_url=f"{DOCS_ASSETS_PATH}/swagger-ui.css",
        standalone_preset_js_url=f"{DOCS_ASSETS_PATH}/swagger-ui-standalone-preset.js",
        favicon=(f"<link rel='icon' type='image/png' href='{DOCS_ASSETS_PATH}/favicon-32x32.png'>"),
    )


__all__ = [
    "AUTHENTICATED",
    "DOCS_ASSETS_PATH",
    "DOCS_PATH",
    "EDGE",
    "ERROR_DESCRIPTIONS",
    "WITH_BODY",
    "ErrorBody",
    "api_errors",
    "docs_assets_router",
    "drop_validation_400",
    "errors",
    "swagger_plugin",
]
