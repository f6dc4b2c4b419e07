"""Parts of the LangGraph Server API that Steward does not build answer 404 with a clear detail.

The SDK maps 404 to `NotFoundError`; a plain "Not Found" would read like a wrong URL.
"""

from __future__ import annotations

from typing import Any

from litestar import route

from core.errors import NotFound

_METHODS: list[Any] = ["GET", "POST", "PUT", "PATCH", "DELETE"]


@route(["/store/{rest:path}"], http_method=_METHODS, include_in_schema=False)
async def store_not_built(rest: str) -> None:
    """The key-value store (`/store/*`) is not part of Steward."""
    raise NotFound("the store API (/store/*) is not implemented by Steward")


@route(
    ["/runs/crons", "/runs/crons/{rest:path}", "/threads/{thread_id:str}/runs/crons"],
    http_method=_METHODS,
    include_in_schema=False,
)
async def crons_not_built(rest: str = "", thread_id: str = "") -> None:
    """Scheduled runs (`/runs/crons`) are not part of Steward."""
    raise NotFound("cron jobs (/runs/crons) are not implemented by Steward")


UNSUPPORTED_ROUTES = [store_not_built, crons_not_built]
