"""The control API for tests under `/_mock/`: queued faults, the request log and counters."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.handlers import HTTPRouteHandler

from mock_llm.faults import Fault
from mock_llm.state import MockState
from mock_llm.wire import error_response, json_body


def control_routes(state: MockState) -> list[HTTPRouteHandler]:
    """Build the `/_mock/` route handlers over one app's state.

    Args:
        state: The state the chat and embeddings routes share.

    Returns:
        The handlers, in the order the app registers them.
    """

    @post("/_mock/faults", status_code=200)
    async def add_faults(request: Request[Any, Any, Any]) -> Response[Any]:
        """Queue faults (a JSON list, or one object); they apply FIFO to later chat requests."""
        body = await json_body(request)
        raw = body if isinstance(body, list) else [body]
        try:
            parsed = [Fault.parse(item) for item in raw]
        except ValueError as exc:
            return error_response(400, str(exc))
        state.faults.extend(parsed)
        return Response({"queued": [asdict(f) for f in state.faults]})

    @get("/_mock/faults")
    async def list_faults() -> list[dict[str, Any]]:
        """Return the faults still queued."""
        return [asdict(f) for f in state.faults]

    @delete("/_mock/faults")
    async def clear_faults() -> None:
        """Drop every queued fault."""
        state.faults.clear()

    @get("/_mock/requests")
    async def list_requests() -> list[dict[str, Any]]:
        """Return the logged chat request bodies, oldest first (at most the last 1000)."""
        return list(state.requests)

    @delete("/_mock/requests")
    async def clear_requests() -> None:
        """Forget the logged chat requests."""
        state.requests.clear()

    @get("/_mock/stats")
    async def stats() -> dict[str, Any]:
        """Return request and fault counters."""
        counts = {
            key: state.counts[key]
            for key in ("requests", "embeddings", "faults_served", "random_errors")
        }
        by_kind = {
            key.removeprefix("faults."): value
            for key, value in sorted(state.counts.items())
            if key.startswith("faults.")
        }
        return {**counts, "faults_by_kind": by_kind, "queued_faults": len(state.faults)}

    return [add_faults, list_faults, clear_faults, list_requests, clear_requests, stats]


__all__ = ["control_routes"]
