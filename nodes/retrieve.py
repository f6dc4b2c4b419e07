"""retrieve: fetch the top-k policy chunks for the latest user message."""

from __future__ import annotations

from typing import Any

from graph.deps import Deps
from graph.reports import report_retrieval
from graph.state import State
from nodes.messages import last_human, text_of
from nodes.types import Node


def make_retrieve(deps: Deps) -> Node:
    """Build the retrieval node."""

    async def retrieve(state: State) -> dict[str, Any]:
        """Search the policy index for the user's question; chunks become citable."""
        message = last_human(state["messages"])
        query = text_of(message) if message is not None else ""
        chunks = await deps.retriever.search(query, k=deps.settings.retrieval_k)
        await report_retrieval(chunks)
        return {"retrieved": chunks}

    return retrieve
