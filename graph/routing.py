"""Routers: typed edges between the nodes."""

from __future__ import annotations

from typing import Literal

from langchain_core.messages import AIMessage

from graph.state import State


def route_after_input_filter(state: State) -> Literal["retrieve", "finalize"]:
    """Blocked input goes straight to the refusal; everything else is answered."""
    return "finalize" if state.get("refusal") else "retrieve"


def route_after_agent(state: State) -> Literal["guard_tools", "validate"]:
    """Tool calls (well-formed or not) go through the guard; a final reply is validated."""
    if state.get("stop_reason"):
        return "validate"
    last = state["messages"][-1]
    if isinstance(last, AIMessage) and (last.tool_calls or last.invalid_tool_calls):
        return "guard_tools"
    return "validate"


def route_after_guard(state: State) -> Literal["approval", "run_tools", "agent"]:
    """High-risk calls wait for a person; allowed calls run; denials go back to the model."""
    verdicts = {call["verdict"] for call in state.get("plan", [])}
    if "approve" in verdicts:
        return "approval"
    return "run_tools" if "allow" in verdicts else "agent"


def route_after_approval(state: State) -> Literal["run_tools", "agent"]:
    """Released calls run; if everything was rejected the model explains it."""
    return "run_tools" if any(c["verdict"] == "allow" for c in state.get("plan", [])) else "agent"


def route_after_validate(state: State) -> Literal["agent", "finalize"]:
    """A reply that failed validation goes back for a bounded repair."""
    return "finalize" if state.get("response") is not None else "agent"
