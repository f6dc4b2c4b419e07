"""Service metadata and probes: `/ok`, `/info`, `/healthz` (liveness), `/readyz` (readiness)."""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import langgraph.version
from litestar import Request, Response, get
from litestar.datastructures import State

from graph.runtime import Runtime
from server.drain import Drain
from server.errors import detail_response
from server.openapi import EDGE, errors


def _steward_version() -> str:
    try:
        return version("steward")
    except PackageNotFoundError:
        return "0.0.0"


STEWARD_VERSION = _steward_version()
READY_TIMEOUT_S = 2.0


@get("/ok", operation_id="Ok", tags=["meta"], summary="Ok", responses=errors(*EDGE))
async def ok() -> dict[str, bool]:
    """Answer `{"ok": true}` (langgraph-api's liveness route)."""
    return {"ok": True}


@get(
    "/healthz",
    operation_id="Healthz",
    tags=["meta"],
    summary="Liveness",
    responses=errors(*EDGE),
)
async def healthz() -> dict[str, str]:
    """Answer 200 while the process serves requests; never touches the database."""
    return {"status": "alive"}


@get(
    "/info",
    operation_id="Info",
    tags=["meta"],
    summary="Server information",
    responses=errors(*EDGE, 429),
)
async def info() -> dict[str, Any]:
    """Describe the server like langgraph-api's `/info` (agent-chat-ui calls it)."""
    return {
        "version": STEWARD_VERSION,
        "langgraph_py_version": langgraph.version.__version__,
        "flags": {
            "assistants": True,
            "crons": False,
            "langsmith": False,
            "langsmith_tracing_replicas": False,
        },
        "host": {"kind": "self-hosted", "project_id": None, "revision_id": None, "tenant_id": None},
    }


@get(
    "/readyz",
    operation_id="Readyz",
    tags=["meta"],
    summary="Readiness",
    responses=errors(*EDGE, 503),
)
async def readyz(request: Request[Any, Any, State]) -> Response[dict[str, Any]]:
    """Answer 200 when the database answers and the runtime (with its index) is open, else 503.

    From the moment the process got SIGTERM/SIGINT it answers 503 `{"status": "draining"}`
    (the listener still serves for `STEWARD_SHUTDOWN_DELAY_S`; see `server.drain`).

    `open_runtime` loads the knowledge index before the app accepts requests, so an open
    runtime means the index is loaded.
    """
    drain: Drain | None = request.app.state.get("drain")
    if drain is not None and drain.draining:
        return Response(
            {"status": "draining", "detail": "not ready: shutting down (draining)"},
            status_code=503,
        )
    runtime: Runtime | None = request.app.state.get("runtime")
    if runtime is None:
        return detail_response(503, "not ready: starting up")
    try:
        async with runtime.pool.connection(timeout=READY_TIMEOUT_S) as conn:
            await conn.execute("SELECT 1")
    except Exception as exc:  # noqa: BLE001  # any failure means "not ready"
        return detail_response(503, f"not ready: database unreachable ({type(exc).__name__})")
    return Response({"status": "ready", "database": "ok", "index": "loaded"})


@get("/openapi.json", include_in_schema=False, sync_to_thread=False)
def openapi_json(request: Request[Any, Any, State]) -> dict[str, Any]:
    """The OpenAPI document where the LangGraph server serves it (also at `/docs/openapi.json`)."""
    schema: dict[str, Any] = request.app.openapi_schema.to_schema()
    return schema


META_ROUTES = [ok, healthz, info, readyz, openapi_json]

__all__ = ["META_ROUTES", "STEWARD_VERSION"]
