"""validate: parse the model's final answer, keep only real citations, repair or fall back."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from langchain_core.messages import HumanMessage
from pydantic import ValidationError

from graph.deps import Deps
from graph.prompts import FALLBACK_ANSWER, REPAIR_PROMPT
from graph.schemas import AgentResponse, FinalAnswer
from graph.state import State
from nodes.messages import last_ai, text_of
from nodes.types import Node

log = logging.getLogger(__name__)

_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.DOTALL)


class AnswerInvalid(ValueError):
    """The model's final reply is not a valid FinalAnswer."""


def parse_final_answer(text: str) -> FinalAnswer:
    """Parse the model's reply as the FinalAnswer JSON object (code fences tolerated)."""
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1)
    try:
        data = json.loads(stripped)
    except json.JSONDecodeError as exc:
        raise AnswerInvalid(f"not JSON ({exc.msg})") from exc
    try:
        return FinalAnswer.model_validate(data)
    except ValidationError as exc:
        raise AnswerInvalid(f"schema mismatch: {exc.errors()[0]['msg']}") from exc


def keep_known_sources(sources: list[str], known: set[str]) -> tuple[list[str], list[str]]:
    """Split cited ids into those retrieved in this run (kept, deduplicated) and the rest."""
    kept: list[str] = []
    dropped: list[str] = []
    for source in sources:
        if source in known:
            if source not in kept:
                kept.append(source)
        else:
            dropped.append(source)
    return kept, dropped


def make_validate(deps: Deps) -> Node:
    """Build the node that turns the model's final reply into an AgentResponse."""

    async def validate(state: State) -> dict[str, Any]:
        """Validate the answer; ask the model to repair it a bounded number of times."""
        actions = state.get("actions", [])
        if state.get("stop_reason"):
            log.warning("tool loop stopped early", extra={"stop_reason": state["stop_reason"]})
            return {"response": fallback(actions)}
        try:
            answer = parse_final_answer(text_of(last_ai(state["messages"])))
        except AnswerInvalid as exc:
            repairs = state.get("repairs", 0)
            if repairs < deps.settings.max_repairs:
                return {
                    "repairs": repairs + 1,
                    "messages": [HumanMessage(REPAIR_PROMPT.format(error=exc), name="validator")],
                }
            log.warning("answer invalid after repairs", extra={"error": str(exc)})
            return {"response": fallback(actions)}
        known = {chunk["id"] for chunk in state.get("retrieved", [])}
        sources, dropped = keep_known_sources(answer.sources, known)
        if dropped:
            log.warning("removed citations not retrieved in this run",
                        extra={"dropped": dropped})
        return {
            "response": AgentResponse(
                answer=answer.answer, sources=sources, actions=actions, refusal=None
            )
        }

    return validate


def fallback(actions: list[Any]) -> AgentResponse:
    """The safe answer when no valid one could be produced; actions stay truthful."""
    return AgentResponse(answer=FALLBACK_ANSWER, sources=[], actions=actions, refusal=None)
