"""What a run hands the graph: its RunnableConfig, its input and context, and its values.

`build_config` and `build_context` are the one place that turn a `runs` row into the config
and the context the graph executes with; identity comes from the row, never
from the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command, Send, StateSnapshot

from core.identity import without_identity
from core.jsonable import dumps, interrupt_json
from graph.context import RunContext
from server.runs.models import GRAPH_ID


def build_config(run: dict[str, Any], recursion_limit: int) -> RunnableConfig:
    """The RunnableConfig a run executes with; identity comes from the run, never the client.

    Args:
        run: the `runs` row.
        recursion_limit: the server's cap (`settings.recursion_limit`).
    """
    kwargs = run.get("kwargs") or {}
    client = kwargs.get("config") or {}
    thread_id = str(run["thread_id"])
    configurable = {
        **(client.get("configurable") or {}),
        "thread_id": thread_id,
        "user_id": run["owner_id"],
        "tenant_id": run["tenant_id"],
        # Tool permissions follow the caller's key, never a client-supplied value.
        "role": kwargs.get("role") or "user",
        # Who asked for what this run executes: a resume acts for the approval's requester.
        "requester_id": kwargs.get("requester_id") or run["owner_id"],
    }
    metadata = {
        # Client metadata never names who acts: LangGraph keeps a metadata key over the
        # configurable one it would copy into every checkpoint's metadata.
        **without_identity(client.get("metadata") or {}),
        **without_identity(run.get("metadata") or {}),
        "run_id": str(run["run_id"]),
        "thread_id": thread_id,
        "assistant_id": run["assistant_id"],
        "graph_id": GRAPH_ID,
        "user_id": run["owner_id"],
        "tenant_id": run["tenant_id"],
        "role": configurable["role"],
        "requester_id": configurable["requester_id"],
        "run_attempt": run.get("attempt", 1),
    }
    limit = client.get("recursion_limit")
    config = RunnableConfig(
        configurable=configurable,
        metadata=metadata,
        recursion_limit=min(int(limit), recursion_limit) if limit else recursion_limit,
    )
    if client.get("tags"):
        config["tags"] = list(client["tags"])
    if client.get("run_name"):
        config["run_name"] = str(client["run_name"])
    return config


def build_context(run: dict[str, Any]) -> RunContext:
    """The identity a run executes with (the graph's context), from the run, never the client.

    A client's `context` body field is not used: every field of the context is identity.
    """
    kwargs = run.get("kwargs") or {}
    return RunContext(
        user_id=run["owner_id"],
        tenant_id=run["tenant_id"],
        role=kwargs.get("role") or "user",
        requester_id=kwargs.get("requester_id") or run["owner_id"],
    )


def graph_input(kwargs: dict[str, Any]) -> Any:
    """The first argument of `astream`: the input, a `Command`, or None (continue)."""
    command = kwargs.get("command")
    if not command:
        return kwargs.get("input")
    goto = command.get("goto")
    if isinstance(goto, dict):
        goto = Send(goto["node"], goto.get("input"))
    elif isinstance(goto, list):
        goto = [Send(g["node"], g.get("input")) if isinstance(g, dict) else g for g in goto]
    return Command(
        resume=command.get("resume"),
        update=command.get("update"),
        goto=goto if goto is not None else (),
    )


def final_output(state: StateSnapshot, interrupts: list[dict[str, Any]] | None = None) -> str:
    """The thread's values with pending interrupts merged in, as the JSON `/wait` returns.

    Serialised once here; the run row stores this text and `/wait` sends it as it is.

    Args:
        state: the thread's state.
        interrupts: `state.interrupts` already converted with `interrupt_json`, if at hand.
    """
    values: dict[str, Any] = (
        dict(state.values) if isinstance(state.values, Mapping) else {"values": state.values}
    )
    if state.interrupts:
        values["__interrupt__"] = (
            interrupts if interrupts is not None else [interrupt_json(i) for i in state.interrupts]
        )
    return dumps(values)


def thread_config(config: RunnableConfig) -> RunnableConfig:
    """The config that reads the thread's latest state."""
    return RunnableConfig(
        configurable={"thread_id": (config.get("configurable") or {})["thread_id"]}
    )
