"""The graph's public data contracts: final response, action records, approval payloads."""

from __future__ import annotations

from typing import Any, Literal, TypedDict

from pydantic import BaseModel, ConfigDict, Field

ActionStatus = Literal["executed", "pending_approval", "rejected", "denied", "failed"]


class ActionRecord(TypedDict):
    """What happened to one tool call the model asked for."""

    id: str
    name: str
    args: dict[str, Any]
    status: ActionStatus
    detail: str


class AgentResponse(TypedDict):
    """The validated final answer of a turn, stored in state under `response`."""

    answer: str
    sources: list[str]
    actions: list[ActionRecord]
    refusal: str | None


class FinalAnswer(BaseModel):
    """The JSON object the model must produce as its final answer."""

    model_config = ConfigDict(extra="ignore")

    answer: str = Field(min_length=1, max_length=8000)
    sources: list[str] = Field(default_factory=list, max_length=20)


class ActionRequest(TypedDict):
    """One action shown to a reviewer (agent-chat-ui HITL shape)."""

    name: str
    args: dict[str, Any]
    description: str


class ReviewConfig(TypedDict):
    """Which decisions a reviewer may take on an action."""

    action_name: str
    allowed_decisions: list[str]


class ApprovalRequest(TypedDict):
    """The interrupt value of the approval node."""

    action_requests: list[ActionRequest]
    review_configs: list[ReviewConfig]


class ApproveDecision(BaseModel):
    """Release the action as proposed."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["approve"]
    message: str | None = Field(default=None, max_length=2000)


class RejectDecision(BaseModel):
    """Refuse the action; the message is passed to the model."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["reject"]
    message: str | None = Field(default=None, max_length=2000)


class EditedAction(BaseModel):
    """The action a reviewer wants executed instead."""

    model_config = ConfigDict(extra="forbid")
    name: str
    args: dict[str, Any]


class EditDecision(BaseModel):
    """Release the action with reviewer-edited arguments."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["edit"]
    edited_action: EditedAction
    message: str | None = Field(default=None, max_length=2000)


Decision = ApproveDecision | RejectDecision | EditDecision
