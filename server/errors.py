"""Errors raised by the HTTP service, and their mapping to `{"detail": ...}` responses.

ServiceError                    anything the service raises on purpose        500
├── Unauthorized                missing, unknown or revoked API key          401
├── Forbidden                   the principal's role may not do this         403
├── NotFound                    missing, or not visible to the principal     404
├── Conflict                    state conflict (busy thread, 2nd decision)   409
├── Unprocessable               well-formed but invalid request              422
├── PayloadTooLarge             request body above the limit                 413
├── TooManyRequests             rate limited; carries `retry_after`          429
└── Unavailable                 database (or another dependency) is down     503

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

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1_048_576
"""Request body limit (1 MiB) for every route; larger bodies answer 413."""


class ServiceError(Exception):
    """Base of every error the service raises on purpose."""

    status_code: int = 500
    default_detail: str = "internal error"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)

    def headers(self) -> dict[str, str]:
        """Extra response headers (e.g. `Retry-After`)."""
        return {}


class Unauthorized(ServiceError):
    """No valid API key was presented."""

    status_code = 401
    default_detail = "missing or invalid API key"

    def headers(self) -> dict[str, str]:
        """Tell clients how to authenticate."""
        return {"WWW-Authenticate": 'Bearer realm="steward"'}


class Forbidden(ServiceError):
    """The principal is authenticated but its role does not allow this."""

    status_code = 403
    default_detail = "forbidden"


class NotFound(ServiceError):
    """The resource does not exist or is not visible to the principal."""

    status_code = 404
    default_detail = "not found"


class Conflict(ServiceError):
    """The request conflicts with the resource's current state."""

    status_code = 409
    default_detail = "conflict"


class Unprocessable(ServiceError):
    """The request is well-formed JSON but not acceptable."""

    status_code = 422
    default_detail = "unprocessable request"


class PayloadTooLarge(ServiceError):
    """The request body exceeds the limit."""

    status_code = 413
    default_detail = f"request body too large (limit {MAX_BODY_BYTES} bytes)"


class TooManyRequests(ServiceError):
    """Rate limited; retry after `retry_after` seconds."""

    status_code = 429
    default_detail = "too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """Send `Retry-After` in seconds."""
        return {"Retry-After": str(self.retry_after)}


class Unavailable(ServiceError):
    """A dependency (usually the database) is unreachable."""

    status_code = 503
    default_detail = "service unavailable: database unreachable"


def detail_response(
    status_code: int, detail: str, headers: dict[str, str] | None = None
) -> Response[dict[str, Any]]:
    """Build the one error body the service uses: `{"detail": "..."}`."""
    return Response(
        content={"detail": detail}, status_code=status_code, headers=headers,
        media_type=MediaType.JSON,
    )


def service_error_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Map a `ServiceError` to its status code and detail."""
    assert isinstance(exc, ServiceError)
    if exc.status_code >= 500:
        logger.warning("%s: %s", type(exc).__name__, exc.detail)
    return detail_response(exc.status_code, exc.detail, exc.headers())


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
    parts = [
        f"{_field_name(item)}: {_message(item)}" for item in extra if isinstance(item, dict)
    ]
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
    return detail_response(413, PayloadTooLarge.default_detail)


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
    logger.exception(
        "unhandled error on %s %s", request.method, request.url.path, exc_info=exc
    )
    return detail_response(500, "internal error")


def not_found_handler(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    """Unknown routes answer 404 with our body shape."""
    assert isinstance(exc, HTTPException)
    return detail_response(404, exc.detail or "not found")


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    ServiceError: service_error_handler,
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
    "MAX_BODY_BYTES",
    "Conflict",
    "Forbidden",
    "NotFound",
    "PayloadTooLarge",
    "ServiceError",
    "TooManyRequests",
    "Unauthorized",
    "Unavailable",
    "Unprocessable",
    "detail_response",
]
