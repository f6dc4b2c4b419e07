"""Streaming a run's graph into its event log, in the modes the client asked for."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from langchain_core.messages import BaseMessage, BaseMessageChunk, SystemMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import RunControl

from core.identity import without_identity
from graph.context import RunContext
from graph.reports import REPORT
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
    modes = {_GRAPH_MODE.get(m, m) for m in requested} - {"events"}
    wants_updates = "updates" in requested
    if "values" not in requested and not wants_updates:
        modes.add("updates")  # interrupts are always surfaced (as `values` events)
    subgraphs = bool(kwargs.get("stream_subgraphs"))
    options: dict[str, Any] = {
        "stream_mode": sorted(modes),
        "durability": kwargs.get("durability") or "sync",
        "subgraphs": subgraphs,
        "interrupt_before": kwargs.get("interrupt_before"),
        "interrupt_after": kwargs.get("interrupt_after"),
        "control": control,
        "context": context,
    }
    # As langgraph-api: with both, `messages-tuple` wins and the legacy events are not sent.
    legacy = (
        LegacyMessages() if "messages" in requested and "messages-tuple" not in requested else None
    )
    parts = (
        _event_parts(graph, todo, config, options, writer)
        if "events" in requested
        else graph.astream(todo, config, **options)
    )
    async for part in parts:
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
        if mode == "messages":
            data = _message_without_identity(data)
        if mode == "messages" and legacy is not None:
            for event, payload in legacy.events(data):
                writer.emit(event + suffix, payload)
            continue
        if mode in ("checkpoints", "debug"):
            data = _without_identity(data)
        writer.emit(mode + suffix, list(data) if mode == "messages" else data)


_GRAPH_MODE = {"messages-tuple": "messages"}
"""Client stream modes LangGraph calls by another name."""


def _without_identity(data: Any) -> Any:
    """A `checkpoints`/`debug` payload without the server-set identity (`SERVER_SET_KEYS`).

    Cleaned: its configs' `configurable` and its checkpoint `metadata`.
    """
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for key in ("config", "parent_config"):
        config = out.get(key)
        if isinstance(config, dict) and isinstance(config.get("configurable"), dict):
            out[key] = {**config, "configurable": without_identity(config["configurable"])}
    if isinstance(out.get("metadata"), dict):
        out["metadata"] = without_identity(out["metadata"])
    if isinstance(out.get("payload"), dict):
        out["payload"] = _without_identity(out["payload"])
    return out


def _message_without_identity(data: Any) -> Any:
    """A `(message, metadata)` tuple of the `messages` graph mode with clean metadata."""
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[1], dict):
        return (data[0], without_identity(data[1]))
    return data


class LegacyMessages:
    """The `messages` mode as langgraph-api sends it, from LangGraph's message tuples.

    The first chunk of a message id sends `messages/metadata` `{id: {"metadata": ...}}`;
    every chunk then sends `messages/partial` with the message accumulated so far, and a
    whole message (a node's output, not a token) sends `messages/complete`.
    """

    def __init__(self) -> None:
        self._seen: dict[str, BaseMessage] = {}

    def events(self, data: Any) -> list[tuple[str, Any]]:
        """The events for one `(message, metadata)` tuple."""
        message, metadata = data
        if not isinstance(message, BaseMessage):
            return []
        key = message.id or f"run-{len(self._seen)}"
        out: list[tuple[str, Any]] = []
        earlier = self._seen.get(key)
        if earlier is None:
            out.append(("messages/metadata", {key: {"metadata": metadata}}))
            current = message
        elif isinstance(earlier, BaseMessageChunk) and isinstance(message, BaseMessageChunk):
            current = earlier + message
        else:
            current = message
        self._seen[key] = current
        if isinstance(current, BaseMessageChunk):
            out.append(("messages/partial", [current]))
        else:
            out.append(("messages/complete", [current]))
        return out


HIDDEN_EVENTS = frozenset({REPORT})
"""Custom callback events that stay inside the service (the nodes' reports)."""
WITHHELD = "[system prompt withheld]"


async def _event_parts(
    graph: Graph,
    todo: Any,
    config: RunnableConfig,
    options: dict[str, Any],
    writer: EventWriter,
) -> AsyncIterator[Any]:
    """Stream with `astream_events`: emit each event as `events`, yield the graph's parts.

    The root's `on_chain_stream` events carry the stream-mode parts, which the caller turns
    into their own events, as langgraph-api does. The nodes' reports and events tagged
    `langsmith:hidden` are not sent; the others go out as `_public_event` makes them.
    """
    async for event in graph.astream_events(todo, config, version="v2", **options):
        if event["event"] == "on_chain_stream" and not event.get("parent_ids"):
            yield event["data"]["chunk"]
            continue
        if event.get("name") in HIDDEN_EVENTS or "langsmith:hidden" in (event.get("tags") or []):
            continue
        writer.emit("events", _public_event(event))


def _public_event(event: Any) -> Any:
    """An `astream_events` event as a client may see it.

    System messages anywhere in its data (a model's input is repeated in `on_chat_model_end`,
    a prompt's output holds it too) read `WITHHELD`; the metadata loses the server-set
    identity and the tags the service adds for its own traces (`tenant:<id>`).
    """
    out = {**event, "data": _withheld(event.get("data") or {})}
    if isinstance(event.get("metadata"), dict):
        out["metadata"] = without_identity(event["metadata"])
    if event.get("tags"):
        out["tags"] = [t for t in event["tags"] if not str(t).startswith("tenant:")]
    return out


def _withheld(value: Any) -> Any:
    """`value` with the content of every system message in it replaced by `WITHHELD`."""
    if isinstance(value, SystemMessage):
        return value.model_copy(update={"content": WITHHELD})
    if isinstance(value, BaseMessage):
        return value
    if isinstance(value, PromptValue):
        return [_withheld(m) for m in value.to_messages()]
    if isinstance(value, dict):
        if value.get("type") == "system" or value.get("role") == "system":
            return {**value, "content": WITHHELD}
        return {k: _withheld(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_withheld(v) for v in value]
    return value
