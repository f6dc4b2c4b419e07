"""The graph's state: MessagesState-compatible input, per-turn working fields, the response."""

from __future__ import annotations

from typing import Annotated, Any, Literal, NotRequired, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

from core.domain.types import Approval
from core.knowledge.types import RetrievedChunk
from graph.schemas import ActionRecord, AgentResponse

Verdict = Literal["allow", "approve", "deny"]
DenialCode = Literal[
    "tool_not_allowed",
    "role_not_permitted",
    "invalid_json",
    "invalid_arguments",
    "tool_call_limit",
    "policy",
    "order_state",
    "duplicate_refund",
    "rejected",
]
"""Why a call was denied, as a fixed code next to the human-readable `reason`."""


class PlannedCall(TypedDict):
    """The guard's decision on one tool call of the latest model turn."""

    call_id: str
    name: str
    args: dict[str, Any]
    """Validated arguments in JSON form (amounts as strings)."""
    verdict: Verdict
    reason: str
    code: NotRequired[DenialCode]
    """Set with verdict `deny`: the denial's reason code (metrics, logs); never text."""
    approval: Approval | None
    """Set by the approval node when a person released the call."""


class InputState(TypedDict):
    """What clients send: `{"messages": [{"role": "user", "content": "..."}]}`."""

    messages: Annotated[list[AnyMessage], add_messages]


class State(InputState, total=False):
    """Everything a turn works with; per-turn fields are reset by input_filter.

    Only reason codes and counters are primitives; user text stays inside `messages`
    (a blob channel), never in a primitive channel stored inline in checkpoint JSON.
    """

    refusal: str | None
    """Reason code when input_filter blocked the turn."""
    retrieved: list[RetrievedChunk]
    """Chunks retrieved in this turn (by retrieve or search_policies); the only citable ids."""
    plan: list[PlannedCall]
    """Guard decisions for the tool calls of the latest model turn."""
    actions: list[ActionRecord]
    """What happened to every tool call in this turn."""
    model_calls: int
    tool_calls: int
    repairs: int
    stop_reason: str | None
    """Why the tool loop stopped early (a limit), if it did."""
    response: AgentResponse | None
    """The validated answer of the turn (DESIGN.md: `values["response"]`)."""
    turn_id: str | None
    """Random id of the turn (the usage ledger's run id when the run has none)."""
    route: str | None
    """`routine` or `strong`: which model answers the turn (core.budget.routing)."""
    route_reason: str | None
    """Reason code of the routing decision."""
    guardrail_codes: list[str]
    """Reason codes of the guardrail decisions of the turn (e.g. `pii_redacted`); no text."""
