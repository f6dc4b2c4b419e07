"""Streaming a run's graph into its event log, in the modes the client asked for."""

from __future__ import annotations

from typing import Any, cast

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import RunControl

from graph.context import RunContext
from server.runs.events import EventWriter

Graph = CompiledStateGraph[Any, Any, Any, Any]


async def stream_graph(
    graph: Graph,
    todo: Any,
    config: RunnableConfig,
    kwargs: dict[str, Any],
    writer: EventWriter,
    control: RunControl,
    *,
    context: RunContext,
    continuing: bool = False,
) -> None:
    """Stream the graph into `writer`, as the run's `stream_mode` asked.

    `continuing`: a later attempt continues from its own checkpoint; LangGraph then first
    streams that checkpoint's values, which the stream already holds: skipped.
    """
    requested: list[str] = list(kwargs.get("stream_mode") or ["values"])
    skip_replayed_values = continuing and "values" in requested
    modes = {"messages" if m == "messages-tuple" else m for m in requested}
    wants_updates = "updates" in requested
    if "values" not in requested and not wants_updates:
        modes.add("updates")  # interrupts are always surfaced (as `values` events)
    subgraphs = bool(kwargs.get("stream_subgraphs"))
    async for part in graph.astream(
        todo,
        config,
        stream_mode=cast(Any, sorted(modes)),
        durability="sync",
        subgraphs=subgraphs,
        interrupt_before=kwargs.get("interrupt_before"),
        interrupt_after=kwargs.get("interrupt_after"),
        control=control,
        context=context,
    ):
        if subgraphs:
            namespace, mode, data = part
        else:
            namespace, (mode, data) = (), part
        suffix = "".join(f"|{n}" for n in namespace)
        if skip_replayed_values:
            skip_replayed_values = False
            if mode == "values" and not namespace:
                continue
        if mode == "updates" and isinstance(data, dict) and "__metadata__" in data:
            # A task whose writes an earlier attempt saved is replayed, marked `cached`.
            data = {k: v for k, v in data.items() if k != "__metadata__"}
        if mode == "updates" and not wants_updates:
            if isinstance(data, dict) and "__interrupt__" in data:
                writer.emit("values" + suffix, {"__interrupt__": data["__interrupt__"]})
            continue
        writer.emit(mode + suffix, list(data) if mode == "messages" else data)
