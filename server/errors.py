"""The one place errors become HTTP: `core.errors` refusals and Litestar's own exceptions.

Every `core.errors.Refused` answers `{"detail": ...}` with the status in `HTTP_STATUS`
(401 Unauthorized, 403 Forbidden, 404 NotFound, 409 Conflict, 413 PayloadTooLarge,
422 Unprocessable, 429 TooManyRequests, 503 Unavailable).

Litestar's own exceptions are mapped to the same body: validation errors (422, naming the
field), malformed JSON (422), oversized bodies (413). `psycopg.OperationalError` and
`psycopg_pool.PoolTimeout` become 503; anything else is logged and answers 500
`{"detail": "internal error"}`.
"""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from litestar import MediaType, Request, Response
from litestar.exceptions import (
    HTTPException,
    NotFoundException,
    SerializationException,
    ValidationException,
)
from litestar.exceptions.http_exceptions import RequestEntityTooLarge
from litestar.types import ExceptionHandlersMap
from psycopg_pool import PoolTimeout

from core.errors import (
    Conflict,
    Forbidden,
    NotFound,
    PayloadTooLarge,
    Refused,
    TooManyRequests,
    Unauthorized,
    Unavailable,
    Unprocessable,
)

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_048_576
"""Request body limit (1 MiB) for every route; larger bodies answer 413."""

TOO_LARGE = f"request body too large (limit {MAX_BODY_BYTES} bytes)"


HTTP_STATUS: dict[type[Refused], int] = {
    Unauthorized: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Unprocessable: 422,
    PayloadTooLarge: 413,
    TooManyRequests: 429,
    Unavailable: 503,
}
"""The one mapping of `core.errors` to HTTP status codes."""


def status_of(exc: Refused) -> int:
    """The HTTP status of a refusal: its class's, else its nearest mapped base's, else 500."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def headers_of(exc: Refused) -> dict[str, str]:
    """Extra response headers a refusal carries (`WWW-Authenticate`, `Retry-After`)."""
    if isinstance(exc, Unauthorized):
        return {"WWW-Authenticate": 'Bearer realm="steward"'}
    if isinstance(exc, TooManyRequests):
        return {"Retry-After": str(exc.retry_after)}
    return {}


def detail_response(
    status_code: int, detail: str, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    """Build the one error body the service uses: `{"detail": "..."}`."""
    return Response(
        content={"detail": detail},
        status_code=status_code,
        headers=headers,
        media_type=MediaType.JSON,
    )


def refused_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Map a `core.errors.Refused` to its status code and detail."""
    assert isinstance(exc, Refused)
    status = status_of(exc)
    if status >= 500:
        logger.warning("%s: %s", type(exc).__name__, exc.detail)
    return detail_response(status, exc.detail, headers_of(exc))


def _field_name(item: dict[str, Any]) -> str:
    key = item.get("key")
    if key == "data":
        return "request body"
    source = item.get("source")
    if key and source and source != "body":
        return f"{source} parameter {key!r}"
    if key:
        return f"body field {key!r}"
    return "request body"


def _message(item: dict[str, Any]) -> str:
    message = str(item.get("message") or "invalid value")
    if item.get("key") == "data" and message == "'data'":
        return "missing: send a JSON object"
    return message


def validation_detail(exc: ValidationException) -> str:
    """Turn Litestar's validation error into one readable sentence naming the field(s)."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    parts = [f"{_field_name(item)}: {_message(item)}" for item in extra if isinstance(item, dict)]
    if parts:
        return "invalid request: " + "; ".join(parts)
    detail = exc.detail or "invalid request"
    if "JSON" in detail or "decode" in detail.lower():
        return f"malformed JSON body: {detail}"
    return f"invalid request: {detail}"


def validation_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Answer 422 for request validation failures and malformed JSON."""
    assert isinstance(exc, ValidationException)
    return detail_response(422, validation_detail(exc))


def serialization_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Answer 422 when the body is not valid JSON."""
    return detail_response(422, f"malformed JSON body: {exc}")


def too_large_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Answer 413 for bodies above `MAX_BODY_BYTES`."""
    return detail_response(413, TOO_LARGE)


def http_exception_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Keep Litestar's own HTTP errors (404 route, 405, 401 ...) but with our body shape."""
    assert isinstance(exc, HTTPException)
    if exc.status_code >= 500:
        logger.error("HTTP %s: %s", exc.status_code, exc.detail)
        return detail_response(exc.status_code, "internal error", exc.headers)
    if exc.status_code == 400 and isinstance(exc.__cause__, SerializationException):
        return detail_response(422, f"malformed JSON body: {exc.__cause__}")
    headers = dict(exc.headers or {})
    if exc.status_code == 429 and "Retry-After" not in headers:
        headers["Retry-After"] = headers.get("RateLimit-Reset", "1")
    return detail_response(exc.status_code, exc.detail, headers)


def database_down_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Answer 503 when the database cannot be reached (connection or pool timeout)."""
    logger.warning("database unavailable: %s: %s", type(exc).__name__, exc)
    return detail_response(503, Unavailable.default_detail, {"Retry-After": "5"})


def internal_error_handler(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[dict[str, Any]]:
    """Log the unexpected exception with its traceback and answer 500 without details."""
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return detail_response(500, "internal error")


def not_found_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Unknown routes answer 404 with our body shape."""
    assert isinstance(exc, HTTPException)
    return detail_response(404, exc.detail or "not found")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    Refused: refused_handler,
    ValidationException: validation_handler,
    SerializationException: serialization_handler,
    RequestEntityTooLarge: too_large_handler,
    NotFoundException: not_found_handler,
    HTTPException: http_exception_handler,
    psycopg.OperationalError: database_down_handler,
    PoolTimeout: database_down_handler,
    Exception: internal_error_handler,
}
"""Pass as `Litestar(exception_handlers=...)`; the most specific class wins."""


__all__ = [
    "EXCEPTION_HANDLERS",
    "HTTP_STATUS",
    "MAX_BODY_BYTES",
    "TOO_LARGE",
    "detail_response",
    "status_of",
]
