"""The run context for tests that keep the caller's identity next to the thread id."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graph.context import RunContext


def context_for(config: Mapping[str, Any]) -> RunContext:
    """The `RunContext` naming the user, tenant and role a test's config dict carries."""
    who: Mapping[str, Any] = config.get("configurable") or {}
    return RunContext(
        user_id=who.get("user_id"), tenant_id=who.get("tenant_id"), role=who.get("role")
    )
