"""Litestar pieces for observability: request middleware and the `/metrics` route.

Register them in `create_app`::

    from server.observability import ObservabilityMiddleware, metrics_endpoint
    Litestar(route_handlers=[..., metrics_endpoint], middleware=[ObservabilityMiddleware()], ...)

The middleware, for every matched HTTP route:
- takes the request id from `x-request-id` (when well-formed) or generates one, binds it to the
  log context, stores it in `request.state["request_id"]` and echoes it in the response;
- opens an OpenTelemetry server span `METHOD /route/{template}` (W3C `traceparent` from the
  client is honoured) and makes it current while the handler runs;
- records `steward_http_request_duration_seconds{method, route, status}` (route = template,
  never the raw path) and logs one `http request` line.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from litestar import Request, Response, get
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from core.errors import Refused
from core.observability.logging import bind_log_context, unbind_log_context
from core.observability.metrics import (
    HTTP_REQUEST_SECONDS,
    HTTP_REQUESTS_IN_FLIGHT,
    render_metrics,
)
from core.observability.tracing import get_tracer
from server.errors import status_of

log = logging.getLogger("steward.http")

REQUEST_ID_HEADER = "x-request-id"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
QUIET_ROUTES = frozenset({"/metrics", "/healthz", "/readyz", "/ok"})
"""Routes logged at DEBUG (probes and scrapes), still measured."""
_DEFAULT: Any = object()


def request_id_from(headers: list[tuple[bytes, bytes]] | Any) -> str:
    """Return the client's `x-request-id` when well-formed, else a new random id."""
    for name, value in headers or ():
        if name.lower() == REQUEST_ID_HEADER.encode():
            candidate = value.decode("latin-1").strip()
            if _VALID_REQUEST_ID.match(candidate):
                return candidate
            break
    return uuid.uuid4().hex


def request_id_of(request: Request[Any, Any, Any]) -> str | None:
    """The request id the middleware assigned (for run metadata), if any."""
    value = request.scope.get("state", {}).get("request_id")
    return str(value) if value is not None else None


class ObservabilityMiddleware(ASGIMiddleware):
    """Request id, HTTP latency by route template, access log line, server span."""

    scopes = (ScopeType.HTTP,)

    def __init__(
        self, *, tracer: Tracer | None = _DEFAULT, quiet_routes: frozenset[str] = QUIET_ROUTES
    ) -> None:
        """Create the middleware.

        Args:
            tracer: OpenTelemetry tracer; default `tracing.get_tracer()` at each request
                (so tracing configured after the app was built is used), None for no spans.
            quiet_routes: route templates logged at DEBUG instead of INFO.
        """
        self._tracer = tracer
        self._quiet = quiet_routes

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Measure, log and trace one HTTP request."""
        started = time.perf_counter()
        headers: list[tuple[bytes, bytes]] = list(scope.get("headers") or [])
        request_id = request_id_from(headers)
        scope.setdefault("state", {})["request_id"] = request_id
        method = str(scope.get("method", "GET"))
        route = str(scope.get("path_template") or "unmatched")
        status_code = 500

        tracer = get_tracer() if self._tracer is _DEFAULT else self._tracer
        span = None
        otel_token = None
        if tracer is not None:
            carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
            span = tracer.start_span(
                f"{method} {route}",
                context=propagate.extract(carrier),
                kind=SpanKind.SERVER,
                attributes={
                    "http.request.method": method,
                    "http.route": route,
                    "url.path": str(scope.get("path", "")),
                    "steward.request_id": request_id,
                },
            )
            otel_token = otel_context.attach(trace.set_span_in_context(span))

        async def send_with_id(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
                MutableScopeHeaders.from_message(message).add(REQUEST_ID_HEADER, request_id)
            await send(message)

        log_tokens = bind_log_context(request_id=request_id)
        HTTP_REQUESTS_IN_FLIGHT.inc()
        error: BaseException | None = None
        try:
            await next_app(scope, receive, send_with_id)
        except BaseException as exc:
            error = exc
            status_code = answered_status(exc)  # what the outer exception handler will send
            raise
        finally:
            seconds = time.perf_counter() - started
            HTTP_REQUESTS_IN_FLIGHT.dec()
            HTTP_REQUEST_SECONDS.labels(
                method=method, route=route, status=str(status_code)
            ).observe(seconds)
            level = logging.DEBUG if route in self._quiet else logging.INFO
            if status_code >= 500:
                level = logging.ERROR
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "http request",
                    extra={
                        "method": method,
                        "route": route,
                        "path": scope.get("path", ""),
                        "status": status_code,
                        "duration_ms": round(seconds * 1000, 2),
                        **({"error_type": type(error).__name__} if error is not None else {}),
                    },
                )
            if span is not None:
                span.set_attribute("http.response.status_code", status_code)
                if error is not None and status_code >= 500:
                    span.record_exception(error)
                if status_code >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
            if otel_token is not None:
                otel_context.detach(otel_token)
            unbind_log_context(log_tokens)


def answered_status(exc: BaseException) -> int:
    """The status a request that raised `exc` is answered with (`server.errors`' mapping)."""
    if isinstance(exc, Refused):
        return status_of(exc)
    code = getattr(exc, "status_code", None)  # Litestar's HTTPException and its kin
    return code if isinstance(code, int) else 500


@get(
    "/metrics",
    include_in_schema=False,
    sync_to_thread=True,
    opt={"exclude_from_auth": True},
    name="metrics",
)
def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus exposition (OpenMetrics when the scraper asks for it).

    In a worker thread: the process collector reads `/proc`, which would block the loop.
    """
    body, content_type = render_metrics(request.headers.get("accept"))
    if content_type.startswith("text/"):  # Litestar appends the charset to text/* itself
        content_type = "; ".join(
            p for p in content_type.split("; ") if not p.startswith("charset=")
        )
    return Response(content=body, media_type=content_type)


__all__ = ["ObservabilityMiddleware", "metrics_endpoint", "request_id_from", "request_id_of"]
