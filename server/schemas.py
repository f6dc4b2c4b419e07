"""Request bodies and response shapes of the foundation routes.

Shapes follow what `langgraph-sdk` (Python 0.4.x, JS) sends and reads. The bodies of the
LangGraph API (`_SdkBody`) validate their known fields strictly and ignore, with a log line,
fields they do not know, as the LangGraph server does: a field a newer SDK adds must not
break every call. Fields of the LangGraph API this server does not implement (`ttl`,
`supersteps`, thread `values` filters) are refused with 422 and the reason. Steward's own
approval bodies refuse unknown fields (a typo there is a mistake, not a newer client).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal, NotRequired, TypedDict
from uuid import UUID

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from server.assistants_repo import AssistantRow as AssistantOut
from server.edge import MAX_OFFSET, MAX_PAGE


def _json_integer(value: Any) -> Any:
    """A JSON integer: not a boolean, a float or a numeric string (Litestar validates laxly)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be a JSON integer")
    return value


JsonInt = Annotated[int, BeforeValidator(_json_integer)]
"""An integer field that refuses `true`, `1.0` and `"1"`."""

ThreadStatusName = Literal["idle", "busy", "interrupted", "error"]
ThreadField = Literal[
    "thread_id",
    "created_at",
    "updated_at",
    "state_updated_at",
    "metadata",
    "status",
    "values",
    "interrupts",
    "config",
]
"""The top-level fields of a Thread (`ThreadOut`), what `select` may name."""


log = logging.getLogger(__name__)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _SdkBody(BaseModel):
    """A LangGraph API body: unknown fields ignored and logged, `unsupported` ones refused."""

    model_config = ConfigDict(extra="ignore")
    unsupported: ClassVar[Mapping[str, str]] = {}
    """Fields of the LangGraph API this server refuses, with the reason (422)."""

    @model_validator(mode="before")
    @classmethod
    def _unknown_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        for key, why in cls.unsupported.items():
            if data.get(key) is not None:
                raise ValueError(f"{key}: {why}")
        unknown = sorted(str(k) for k in data if k not in cls.model_fields)
        if unknown:
            log.info(
                "request body: ignored fields this server does not know",
                extra={"body": cls.__name__, "fields": unknown[:20]},
            )
        return data


# --- requests -------------------------------------------------------------------------------


class CheckpointIn(_SdkBody):
    """A checkpoint reference as the SDK sends it."""

    thread_id: str | None = Field(default=None, description="Ignored: the path's thread wins.")
    checkpoint_ns: str = Field(default="", description="Namespace; empty for the root graph.")
    checkpoint_id: str | None = Field(
        default=None,
        description="The checkpoint's id.",
        examples=["1ef4a9b8-d80d-6fa7-8000-9300467fad0f"],
    )
    checkpoint_map: dict[str, Any] | None = Field(default=None, description="Subgraph ids.")


class ThreadCreate(_SdkBody):
    """Body of `POST /threads`."""

    unsupported: ClassVar[Mapping[str, str]] = {
        "ttl": "thread time-to-live is not supported (threads live until deleted)",
        "supersteps": "creating a thread from supersteps is not supported",
    }

    thread_id: UUID | None = Field(default=None, description="Client-chosen id (UUID).")
    metadata: dict[str, Any] | None = Field(
        default=None, description="Free-form metadata.", examples=[{"topic": "refund"}]
    )
    if_exists: Literal["raise", "do_nothing"] = Field(
        default="raise", description="`raise` → 409 if the id exists; `do_nothing` → return it."
    )


class ThreadPatch(_SdkBody):
    """Body of `PATCH /threads/{thread_id}`: metadata keys to merge."""

    unsupported: ClassVar[Mapping[str, str]] = {
        "ttl": "thread time-to-live is not supported (threads live until deleted)"
    }

    metadata: dict[str, Any] = Field(
        description="Merged into the thread's metadata.", examples=[{"priority": "high"}]
    )


class ThreadSearch(_SdkBody):
    """Body of `POST /threads/search`."""

    metadata: dict[str, Any] | None = Field(default=None, description="jsonb containment filter.")
    values: dict[str, Any] | None = Field(default=None, description="Not supported (422).")
    ids: list[UUID] | None = Field(default=None, description="Only these thread ids.")
    status: ThreadStatusName | None = Field(default=None, description="Only this status.")
    limit: JsonInt = Field(default=10, ge=1, le=MAX_PAGE, description="Page size.")
    offset: JsonInt = Field(default=0, ge=0, le=MAX_OFFSET, description="Rows to skip.")
    sort_by: Literal["thread_id", "status", "created_at", "updated_at", "state_updated_at"] = Field(
        default="created_at", description="Sort column."
    )
    sort_order: Literal["asc", "desc"] = Field(default="desc", description="Sort direction.")
    select: list[ThreadField] | None = Field(
        default=None, description="Only these top-level fields (an unknown one is a 422)."
    )


class ThreadPrune(_SdkBody):
    """Body of `POST /threads/prune`."""

    thread_ids: list[UUID] = Field(
        min_length=1, max_length=MAX_PAGE, description="The threads to prune."
    )
    strategy: Literal["delete", "keep_latest"] = Field(
        default="delete",
        description="`delete`: the threads go (their runs are cancelled first, as on DELETE);"
        " `keep_latest`: only each thread's latest checkpoint stays.",
    )


class ThreadCount(_SdkBody):
    """Body of `POST /threads/count`."""

    metadata: dict[str, Any] | None = Field(default=None, description="jsonb containment filter.")
    values: dict[str, Any] | None = Field(default=None, description="Not supported (422).")
    status: ThreadStatusName | None = Field(default=None, description="Only this status.")


class StateAtCheckpoint(_SdkBody):
    """Body of `POST /threads/{thread_id}/state/checkpoint`."""

    checkpoint: CheckpointIn = Field(description="Which checkpoint to read.")
    subgraphs: bool = Field(default=False, description="Include subgraph states.")
    select: list[str] | None = Field(default=None, description="Ignored.")


class StateUpdate(_SdkBody):
    """Body of `POST /threads/{thread_id}/state` (update_state)."""

    values: dict[str, Any] | None = Field(
        default=None,
        description="Channel updates, applied through the reducers.",
        examples=[{"messages": [{"role": "user", "content": "hello"}]}],
    )
    as_node: str | None = Field(default=None, description="Apply as if this node had run.")
    checkpoint: CheckpointIn | None = Field(default=None, description="Fork from here.")
    checkpoint_id: str | None = Field(default=None, description="Deprecated form of checkpoint.")


class HistoryRequest(_SdkBody):
    """Body of `POST /threads/{thread_id}/history`."""

    limit: JsonInt = Field(default=10, ge=1, le=MAX_PAGE, description="At most this many states.")
    before: str | dict[str, Any] | None = Field(
        default=None,
        description="Only states older than this checkpoint: its id, a checkpoint object or a"
        " config (`{configurable: {checkpoint_id}}`).",
    )
    metadata: dict[str, Any] | None = Field(default=None, description="Checkpoint metadata filter.")
    checkpoint: CheckpointIn | None = Field(default=None, description="Start from here.")
    select: list[str] | None = Field(default=None, description="Ignored.")


class AssistantCreate(_SdkBody):
    """Body of `POST /assistants`: version 1 of an assistant of the tenant."""

    graph_id: str = Field(description="The graph; this server serves `agent`.")
    assistant_id: UUID | None = Field(default=None, description="Client-chosen id (UUID).")
    config: dict[str, Any] | None = Field(
        default=None,
        description="Run config defaults (`configurable`, `tags`, `metadata`, ...).",
        examples=[{"configurable": {"tone": "brief"}}],
    )
    context: dict[str, Any] | None = Field(default=None, description="Run context defaults.")
    metadata: dict[str, Any] | None = Field(default=None, description="Free-form metadata.")
    if_exists: Literal["raise", "do_nothing"] = Field(
        default="raise", description="`raise` → 409 if the id exists; `do_nothing` → return it."
    )
    name: str | None = Field(default=None, max_length=1000, description="Defaults to Untitled.")
    description: str | None = Field(default=None, max_length=10_000)


class AssistantPatch(_SdkBody):
    """Body of `PATCH /assistants/{assistant_id}`: a new version from the latest one."""

    graph_id: str | None = Field(default=None, description="The graph; only `agent`.")
    config: dict[str, Any] | None = Field(default=None, description="Replaces the config.")
    context: dict[str, Any] | None = Field(default=None, description="Replaces the context.")
    metadata: dict[str, Any] | None = Field(
        default=None, description="Merged into the metadata (top-level keys replaced)."
    )
    name: str | None = Field(default=None, max_length=1000)
    description: str | None = Field(default=None, max_length=10_000)


class AssistantVersionsSearch(_SdkBody):
    """Body of `POST /assistants/{assistant_id}/versions`."""

    metadata: dict[str, Any] | None = Field(default=None, description="Containment filter.")
    limit: JsonInt = Field(default=10, ge=1, le=MAX_PAGE, description="Page size.")
    offset: JsonInt = Field(default=0, ge=0, le=MAX_OFFSET, description="Rows to skip.")


class AssistantLatest(_SdkBody):
    """Body of `POST /assistants/{assistant_id}/latest`."""

    version: JsonInt = Field(
        ge=1, le=2**31 - 1, description="The stored version to make the latest."
    )


class AssistantSearch(_SdkBody):
    """Body of `POST /assistants/search`."""

    metadata: dict[str, Any] | None = Field(
        default=None, description="Containment filter.", examples=[{"created_by": "system"}]
    )
    graph_id: str | None = Field(default=None, description="Only this graph.")
    name: str | None = Field(default=None, description="Name contains (case-insensitive).")
    limit: JsonInt = Field(default=10, ge=1, le=MAX_PAGE, description="Page size.")
    offset: JsonInt = Field(default=0, ge=0, le=MAX_OFFSET, description="Rows to skip.")
    sort_by: Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"] | None = Field(
        default=None, description="Sort column."
    )
    sort_order: Literal["asc", "desc"] | None = Field(default=None, description="Direction.")
    select: list[str] | None = Field(default=None, description="Only these top-level fields.")


class AssistantCount(_SdkBody):
    """Body of `POST /assistants/count`."""

    metadata: dict[str, Any] | None = Field(default=None, description="Containment filter.")
    graph_id: str | None = Field(default=None, description="Only this graph.")
    name: str | None = Field(default=None, description="Name contains (case-insensitive).")


# --- approvals ---


class EditedActionIn(_Body):
    """The action to run instead: same tool, edited arguments."""

    name: str = Field(
        description="Tool name; must be the held action's tool.", examples=["issue_refund"]
    )
    args: dict[str, Any] = Field(
        description="The full, edited arguments.",
        examples=[{"order_id": "LS-10007", "amount": "450.00", "reason": "partial refund"}],
    )


class ApprovalDecisionIn(_Body):
    """Body of `POST /approvals/{approval_id}/decision`."""

    type: Literal["approve", "edit", "reject"] = Field(description="The decision.")
    edited_action: EditedActionIn | None = Field(
        default=None, description="Required for `edit`, only then."
    )
    comment: str | None = Field(
        default=None, max_length=2000, description="Why; passed to the agent for a rejection."
    )

    @model_validator(mode="after")
    def _edit_needs_action(self) -> ApprovalDecisionIn:
        if self.type == "edit" and self.edited_action is None:
            raise ValueError("edited_action is required when type is 'edit'")
        if self.type != "edit" and self.edited_action is not None:
            raise ValueError("edited_action is only allowed when type is 'edit'")
        return self


# --- responses ------------------------------------------------------------------------------


class InterruptOut(TypedDict):
    """A pending interrupt: its payload and the id a resume must name."""

    value: Any
    id: str
    response_schema: NotRequired[dict[str, Any]]


class CheckpointOut(TypedDict):
    """A checkpoint reference."""

    thread_id: str
    checkpoint_ns: str
    checkpoint_id: str
    checkpoint_map: dict[str, Any]


class ThreadTaskOut(TypedDict):
    """A task of the next step (pending node), with its interrupts."""

    id: str
    name: str
    error: str | None
    interrupts: list[InterruptOut]
    checkpoint: CheckpointOut | None
    state: ThreadStateOut | None
    result: Any


class ThreadStateOut(TypedDict):
    """A thread's state at one checkpoint."""

    values: Any
    next: list[str]
    checkpoint: CheckpointOut | None
    metadata: dict[str, Any]
    created_at: str | None
    parent_checkpoint: CheckpointOut | None
    tasks: list[ThreadTaskOut]
    interrupts: list[InterruptOut]
    checkpoint_id: str | None
    """Deprecated in the LangGraph API (`checkpoint.checkpoint_id`), still sent."""
    parent_checkpoint_id: str | None
    """Deprecated in the LangGraph API (`parent_checkpoint.checkpoint_id`), still sent."""


class ThreadOut(TypedDict):
    """A thread as the SDK sees it."""

    thread_id: str
    created_at: datetime
    updated_at: datetime
    state_updated_at: datetime
    """When its state last changed: the latest checkpoint's time (its row's `updated_at` where
    the state is not loaded, e.g. a search that selects no `values`)."""
    metadata: dict[str, Any]
    status: str
    values: Any
    interrupts: dict[str, list[InterruptOut]]
    config: dict[str, Any]
    """Always `{}`: a run's config belongs to the run (`Run.kwargs.config`)."""


class StateUpdateOut(TypedDict):
    """Answer of update_state: the new checkpoint."""

    checkpoint: CheckpointOut | None


class GraphSchemaOut(TypedDict):
    """JSON schemas of a graph's input, output, state and config/context."""

    graph_id: str
    input_schema: dict[str, Any] | None
    output_schema: dict[str, Any] | None
    state_schema: dict[str, Any] | None
    config_schema: dict[str, Any] | None
    context_schema: dict[str, Any] | None


__all__ = [
    "ApprovalDecisionIn",
    "AssistantCount",
    "AssistantCreate",
    "AssistantLatest",
    "AssistantOut",
    "AssistantPatch",
    "AssistantSearch",
    "AssistantVersionsSearch",
    "CheckpointIn",
    "CheckpointOut",
    "EditedActionIn",
    "GraphSchemaOut",
    "HistoryRequest",
    "InterruptOut",
    "StateAtCheckpoint",
    "StateUpdate",
    "StateUpdateOut",
    "ThreadCount",
    "ThreadCreate",
    "ThreadOut",
    "ThreadPatch",
    "ThreadSearch",
    "ThreadStateOut",
    "ThreadTaskOut",
]
