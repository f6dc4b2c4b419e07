"""finalize: write the turn's AgentResponse and a readable reply into the conversation."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage

from core.errors import InvariantViolated
from graph.deps import Deps
from graph.prompts import REFUSAL_ANSWERS
from graph.schemas import AgentResponse
from graph.state import State
from nodes.types import Node


def make_finalize(deps: Deps) -> Node:
    """Build the last node of every turn."""

    async def finalize(state: State) -> dict[str, Any]:
        """Produce the refusal for blocked input, or publish the validated response."""
        refusal = state.get("refusal")
        if refusal is not None:
            answer = REFUSAL_ANSWERS.get(refusal, REFUSAL_ANSWERS["empty_input"])
            response = AgentResponse(answer=answer, sources=[], actions=[], refusal=refusal)
            return {"response": response, "messages": [AIMessage(answer)]}
        published = state.get("response")
        if published is None:
            raise InvariantViolated("finalize reached without a response")
        last = state["messages"][-1]
        # Replace the model's raw JSON reply with the readable answer (same id), so clients
        # show prose; a reply that still carries tool calls must stay, so append instead.
        same_id = last.id if isinstance(last, AIMessage) and not last.tool_calls else None
        reply = AIMessage(
            published["answer"],
            id=same_id,
            additional_kwargs={"sources": published["sources"]},
            name="steward",
        )
        return {"messages": [reply]}

    return finalize
