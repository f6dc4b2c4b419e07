"""agent: call the chat model with the allowlisted tools bound."""

from __future__ import annotations

from typing import Any

import openai
from langchain_core.messages import BaseMessage, SystemMessage

from graph.deps import Deps
from graph.errors import ProviderError
from graph.prompts import CONTEXT_CHUNK, NO_CONTEXT, SYSTEM_PROMPT
from graph.state import State
from graph.tools import TOOLS
from nodes.types import Node
from steward.knowledge.types import RetrievedChunk

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


def system_prompt(chunks: list[RetrievedChunk], deps: Deps) -> SystemMessage:
    """Render the system prompt with this turn's citable policy excerpts."""
    seen: set[str] = set()
    lines: list[str] = []
    for chunk in chunks:
        if chunk["id"] in seen:
            continue
        seen.add(chunk["id"])
        text = " ".join(chunk["text"].split())
        lines.append(CONTEXT_CHUNK.format(id=chunk["id"], title=chunk["title"], text=text))
    return SystemMessage(
        SYSTEM_PROMPT.format(
            threshold=deps.approval_threshold,
            currency="USD",
            context="\n".join(lines) or NO_CONTEXT,
        )
    )


def as_provider_error(exc: openai.APIError) -> ProviderError:
    """Translate an OpenAI client error into our error with a retry verdict."""
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("LLM provider timed out", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError("LLM provider unreachable", retryable=True)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return ProviderError(
            f"LLM provider answered HTTP {status}",
            retryable=status in RETRYABLE_STATUS,
            status=status,
        )
    return ProviderError(f"LLM provider error: {type(exc).__name__}", retryable=False)


def make_agent(deps: Deps) -> Node:
    """Build the model-calling node; it binds only the assistant's allowlisted tools."""
    schemas = [TOOLS[name].openai_schema() for name in deps.allowed_tools if name in TOOLS]
    model = deps.chat_model.bind_tools(schemas) if schemas else deps.chat_model

    async def agent(state: State) -> dict[str, Any]:
        """Ask the model for the next step: tool calls or a final JSON answer."""
        calls = state.get("model_calls", 0)
        if calls >= deps.settings.max_model_calls:
            return {"stop_reason": "model_call_limit"}
        prompt: list[BaseMessage] = [
            system_prompt(state.get("retrieved", []), deps),
            *state["messages"],
        ]
        try:
            reply = await model.ainvoke(prompt)
        except openai.APIError as exc:
            raise as_provider_error(exc) from exc
        return {"messages": [reply], "model_calls": calls + 1}

    return agent
