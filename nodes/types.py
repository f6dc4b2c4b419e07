"""Call signatures of node functions, as LangGraph's `add_node` expects them."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from langchain_core.runnables import RunnableConfig

from graph.state import State


class Node(Protocol):
    """A node that needs only the state."""

    def __call__(self, state: State) -> Awaitable[dict[str, Any]]:
        """Run the node and return the state keys it changes."""
        ...


class ConfigNode(Protocol):
    """A node that also reads the run's config (thread id, user id)."""

    def __call__(self, state: State, config: RunnableConfig) -> Awaitable[dict[str, Any]]:
        """Run the node and return the state keys it changes."""
        ...
