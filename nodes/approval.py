"""approval: the only place a high-risk call is released, by a person's recorded decision."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from core.domain.types import Approval
from graph.context import RunContext, context_of
from graph.deps import Deps
from graph.reports import report_approval_decisions
from graph.run_control import checkpoint_before_side_effects
from graph.schemas import (
    ActionRecord,
    ActionRequest,
    ApprovalRequest,
    Decision,
    EditDecision,
    RejectDecision,
    ReviewConfig,
)
from graph.state import PlannedCall, State
from graph.tools import TOOLS
from nodes.guard_tools import check_domain, denial_message, denial_record, judge_call
from nodes.types import ContextNode

log = logging.getLogger(__name__)

ALLOWED_DECISIONS = ["approve", "edit", "reject"]


def describe(call: PlannedCall) -> str:
    """A one-line explanation for the reviewer."""
    args = ", ".join(f"{k}={v}" for k, v in call["args"].items())
    return f"{call['name']}({args}) {call['reason']}."


def approval_request(pending: list[PlannedCall]) -> ApprovalRequest:
    """The interrupt payload, in agent-chat-ui's human-in-the-loop shape."""
    return ApprovalRequest(
        action_requests=[
            ActionRequest(name=c["name"], args=c["args"], description=describe(c)) for c in pending
        ],
        review_configs=[
            ReviewConfig(action_name=c["name"], allowed_decisions=ALLOWED_DECISIONS)
            for c in pending
        ],
    )


class ApprovalResume(BaseModel):
    """What a reviewer sends back: one decision per held action, in order."""

    model_config = ConfigDict(extra="forbid")
    decisions: list[Decision]


def resume_schema(pending: list[PlannedCall]) -> type[ApprovalResume]:
    """A resume model requiring exactly one valid decision per pending action, in order."""
    n = len(pending)

    class PendingApprovalResume(ApprovalResume):
        decisions: list[Decision] = Field(min_length=n, max_length=n)

        @model_validator(mode="after")
        def edits_keep_the_tool_and_valid_args(self) -> PendingApprovalResume:
            for call, decision in zip(pending, self.decisions, strict=True):
                if isinstance(decision, EditDecision):
                    if decision.edited_action.name != call["name"]:
                        raise ValueError(
                            f"an edit may change the arguments of {call['name']}, not the tool"
                        )
                    TOOLS[call["name"]].args_model.model_validate(decision.edited_action.args)
            return self

    return PendingApprovalResume


def rejection_message(call: PlannedCall, decision: RejectDecision) -> ToolMessage:
    """Tell the model the reviewer refused the call."""
    detail = "rejected by the reviewer" + (f": {decision.message}" if decision.message else "")
    content = json.dumps({"status": "rejected", "error": detail})
    return ToolMessage(
        content=content, tool_call_id=call["call_id"], name=call["name"], status="error"
    )


def make_approval(deps: Deps) -> ContextNode:
    """Build the approval node. It has no side effects: it only interrupts and records."""

    async def approval(state: State, runtime: Runtime[RunContext] | None = None) -> dict[str, Any]:
        """Pause for a person; apply their approve / edit / reject decisions to the plan."""
        plan = state.get("plan", [])
        pending = [c for c in plan if c["verdict"] == "approve" and c["approval"] is None]
        if not pending:
            return {}
        schema = resume_schema(pending)
        resume = interrupt(approval_request(pending), response_schema=schema)
        decisions: list[Decision] = list(resume.decisions)
        # Informational only: what releases an action is the decided approval row in the
        # database (server.decisions), which the store and a trigger check before a refund.
        context = context_of(runtime)
        reviewer = context.user_id or "no identity"
        decided_at = datetime.now(UTC).isoformat()
        by_id: dict[str, PlannedCall] = {c["call_id"]: c for c in plan}
        messages: list[ToolMessage] = []
        records: list[ActionRecord] = []
        decided: list[dict[str, Any]] = []
        for call, decision in zip(pending, decisions, strict=True):
            decided.append(
                {
                    "name": call["name"],
                    "call_id": call["call_id"],
                    "decision": decision.type,
                    "reviewer": reviewer,
                }
            )
            if isinstance(decision, RejectDecision):
                by_id[call["call_id"]] = {
                    **call,
                    "verdict": "deny",
                    "reason": "rejected",
                    "code": "rejected",
                }
                messages.append(rejection_message(call, decision))
                records.append(
                    ActionRecord(
                        id=call["call_id"],
                        name=call["name"],
                        args=call["args"],
                        status="rejected",
                        detail=decision.message or "rejected",
                    )
                )
                continue
            args = call["args"]
            if isinstance(decision, EditDecision):
                # A person may release what needs approval, never what the rules deny.
                judged = await check_domain(
                    judge_call(
                        call["call_id"],
                        call["name"],
                        decision.edited_action.args,
                        deps,
                        role=context.role,
                    ),
                    deps,
                )
                if judged["verdict"] == "deny":
                    decided[-1]["decision"] = "reject"  # the rules deny the edited call
                    by_id[call["call_id"]] = judged
                    messages.append(denial_message(judged))
                    records.append(denial_record(judged))
                    continue
                args = judged["args"]
            record = Approval(
                decision=decision.type,
                reviewer=reviewer,
                decided_at=decided_at,
                comment=decision.message,
            )
            by_id[call["call_id"]] = {
                **call,
                "args": args,
                "verdict": "allow",
                "approval": record,
                "reason": f"{'approved' if decision.type == 'approve' else 'edited'} by {reviewer}",
            }
        log.info(
            "approval decided",
            extra={"decisions": [d.type for d in decisions], "reviewer": reviewer},
        )
        await report_approval_decisions(decided)
        released = [by_id[c["call_id"]] for c in plan]
        checkpoint_before_side_effects(runtime, released)
        return {
            "plan": released,
            "messages": messages,
            "actions": [*state.get("actions", []), *records],
        }

    return approval


__all__ = [
    "ApprovalResume",
    "ValidationError",
    "approval_request",
    "make_approval",
    "resume_schema",
]
