"""Route handlers: one module per resource; `deps` holds the app-wide dependency providers."""

from __future__ import annotations

from typing import Any

from server.routes.approvals import ApprovalsController
from server.routes.assistants import AssistantsController
from server.routes.meta import META_ROUTES
from server.routes.threads import ThreadsController
from server.routes.unsupported import UNSUPPORTED_ROUTES


def foundation_routes() -> list[Any]:
    """Every foundation route handler/controller (runs routes are added by the app)."""
    return [
        *META_ROUTES,
        AssistantsController,
        ThreadsController,
        ApprovalsController,
        *UNSUPPORTED_ROUTES,
    ]


__all__ = ["foundation_routes"]
