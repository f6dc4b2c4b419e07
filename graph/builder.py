"""Assemble the workflow: `make_graph(checkpointer, deps=...)` wires the nodes and edges.

The graph's `context_schema` is `graph.context.RunContext`: invoke it with
`context=RunContext(...)` (the run's identity).
"""

from __future__ import annotations

from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Durability

from graph.context import RunContext
from graph.deps import Deps
from graph.retry import llm_retry_policy
from graph.routing import (
    route_after_agent,
    route_after_approval,
    route_after_guard,
    route_after_input_filter,
    route_after_validate,
)
from graph.state import InputState, State
from nodes.agent import make_agent
from nodes.approval import make_approval
from nodes.finalize import make_finalize
from nodes.guard_tools import make_guard_tools
from nodes.input_filter import make_input_filter
from nodes.retrieve import make_retrieve
from nodes.run_tools import make_run_tools
from nodes.validate import make_validate

DURABILITY: Durability = "sync"
"""How in-process callers (`steward chat`, the evals) run: every step is persisted before the
next starts, so run_tools, the only node with side effects, never runs before the decision
that released it is in Postgres. The service takes each run's durability and, when steps are
not durable, stops before a side effect to save that decision first (`graph.run_control`)."""


def add_edges(builder: StateGraph[State, RunContext, InputState, State]) -> None:
    """Wire the workflow's edges (shared with bench/graph_overhead.py's bare graph)."""
    builder.add_edge(START, "input_filter")
    builder.add_conditional_edges("input_filter", route_after_input_filter)
    builder.add_edge("retrieve", "agent")
    builder.add_conditional_edges("agent", route_after_agent)
    builder.add_conditional_edges("guard_tools", route_after_guard)
    builder.add_conditional_edges("approval", route_after_approval)
    builder.add_edge("run_tools", "agent")
    builder.add_conditional_edges("validate", route_after_validate)
    builder.add_edge("finalize", END)


def make_graph(
    checkpointer: BaseCheckpointSaver[Any] | None = None,
    *,
    deps: Deps,
    **overrides: Any,
) -> CompiledStateGraph[State, RunContext, InputState, State]:
    """Build and compile the agent workflow.

    Args:
        checkpointer: persistence (AsyncPostgresSaver in the service); None for langgraph dev.
        deps: the nodes' dependencies (the composition root builds them).
        **overrides: replace single fields of `deps` (e.g. `chat_model=...` in tests).
    """
    for key, value in overrides.items():
        setattr(deps, key, value)
    builder = StateGraph(State, context_schema=RunContext, input_schema=InputState)
    builder.add_node("input_filter", make_input_filter(deps))
    builder.add_node("retrieve", make_retrieve(deps))
    builder.add_node(
        "agent", make_agent(deps), retry_policy=llm_retry_policy(deps.settings.llm_max_attempts)
    )
    builder.add_node("guard_tools", make_guard_tools(deps))
    builder.add_node("approval", make_approval(deps))
    builder.add_node("run_tools", make_run_tools(deps))
    builder.add_node("validate", make_validate(deps))
    builder.add_node("finalize", make_finalize(deps))
    add_edges(builder)
    compiled = builder.compile(checkpointer=checkpointer, name="agent")
    return compiled.with_config(recursion_limit=deps.settings.recursion_limit)
