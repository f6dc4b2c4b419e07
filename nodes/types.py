"""Call signatures of node functions, as LangGraph's `add_node` expects them."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol

from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from graph.context import RunContext
from graph.state import State


class Node(Protocol):
    """A node that needs only the state."""

    def __call__(self, state: State) -> Awaitable[dict[str, Any]]:
        """Run the node and return the state keys it changes."""
        ...


class ContextNode(Protocol):
    """A node that reads the run's identity (`runtime.context`, injected by LangGraph)."""

    def __call__(
        self, state: State, runtime: Runtime[RunContext] | None = None
    ) -> Awaitable[dict[str, Any]]:
        """Run the node and return the state keys it changes."""
        ...


class ConfigContextNode(Protocol):
    """A node that reads the run's identity and its config (run id, callbacks)."""

    def __call__(
        self, state: State, config: RunnableConfig, runtime: Runtime[RunContext] | None = None
    ) -> Awaitable[dict[str, Any]]:
        """Run the node and return the state keys it changes."""
        ...
