"""guard_tools: allowlist, argument validation and risk rules for every requested tool call."""

from __future__ import annotations

import json
import logging
from typing import Any

from langchain_core.messages import ToolMessage
from pydantic import ValidationError

from graph.deps import Deps
from graph.schemas import ActionRecord
from graph.state import PlannedCall, State
from graph.tools import TOOLS
from nodes.messages import last_ai
from nodes.types import Node

log = logging.getLogger(__name__)


def denial(call_id: str, name: str, args: dict[str, Any], reason: str) -> PlannedCall:
    """A call that will not run, with the reason the model will be told."""
    return PlannedCall(
        call_id=call_id, name=name, args=args, verdict="deny", reason=reason, approval=None
    )


def judge_call(
    call_id: str, name: str, raw_args: dict[str, Any], deps: Deps
) -> PlannedCall:
    """Decide one well-formed call: unknown or disallowed tools and bad arguments are denied."""
    spec = TOOLS.get(name)
    if spec is None or name not in deps.allowed_tools:
        return denial(call_id, name, raw_args, f"tool '{name}' is not available to this assistant")
    try:
        args = spec.args_model.model_validate(raw_args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
            for err in exc.errors()
        )
        return denial(call_id, name, raw_args, f"invalid arguments for {name}: {problems}")
    verdict = spec.risk(args, deps.approval_threshold)
    reason = {
        "allow": "allowed",
        "approve": f"requires approval (above {deps.approval_threshold} USD)",
        "deny": "denied by policy",
    }[verdict]
    return PlannedCall(
        call_id=call_id,
        name=name,
        args=args.model_dump(mode="json"),
        verdict=verdict,
        reason=reason,
        approval=None,
    )


def denial_message(call: PlannedCall) -> ToolMessage:
    """Tell the model a call was not executed and why."""
    content = json.dumps({"status": "denied", "error": call["reason"]})
    return ToolMessage(content=content, tool_call_id=call["call_id"], name=call["name"],
                       status="error")


def denial_record(call: PlannedCall) -> ActionRecord:
    """The audit record of a denied call."""
    return ActionRecord(
        id=call["call_id"], name=call["name"], args=call["args"], status="denied",
        detail=call["reason"],
    )


def make_guard_tools(deps: Deps) -> Node:
    """Build the node that decides, in code, what each requested tool call may do."""

    async def guard_tools(state: State) -> dict[str, Any]:
        """Check every tool call of the latest model turn; deny, allow or hold for approval."""
        message = last_ai(state["messages"])
        plan: list[PlannedCall] = []
        for bad in message.invalid_tool_calls:
            plan.append(
                denial(
                    bad.get("id") or "", bad.get("name") or "unknown", {},
                    "arguments were not valid JSON; send a JSON object matching the schema",
                )
            )
        budget = deps.settings.max_tool_calls - state.get("tool_calls", 0)
        for call in message.tool_calls:
            call_id = call.get("id") or ""
            if budget <= 0:
                plan.append(denial(call_id, call["name"], call["args"], "tool call limit reached"))
                continue
            budget -= 1
            plan.append(judge_call(call_id, call["name"], call["args"], deps))
        denied = [c for c in plan if c["verdict"] == "deny"]
        for entry in denied:
            log.info("tool call denied", extra={"tool": entry["name"], "reason": entry["reason"]})
        return {
            "plan": plan,
            "messages": [denial_message(c) for c in denied],
            "actions": [*state.get("actions", []), *(denial_record(c) for c in denied)],
            "tool_calls": state.get("tool_calls", 0) + len(message.tool_calls),
        }

    return guard_tools
