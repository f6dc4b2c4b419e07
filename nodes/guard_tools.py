"""guard_tools: allowlist, role permissions, argument validation and risk rules, in code.

For every tool call of the latest model turn, in order:
1. the tool exists and is on the assistant's allowlist (`Deps.allowed_tools`);
2. the caller's role (`RunContext.role`) may use it (`Deps.tools_for`);
3. its arguments validate against the tool's pydantic schema;
4. the risk rules (graph.tools.RISK_RULES + `STEWARD_TOOL_RULES`) decide: allow, hold for a
   person's approval, or deny; the strictest matching rule wins;
5. at most `STEWARD_MAX_TOOL_CALLS` calls per turn.
Nothing the model, a document or a tool result says can change these decisions: they read
only the validated arguments, the run's context (identity) and what the *user* wrote.
"""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Any

from langchain_core.messages import ToolMessage
from langgraph.runtime import Runtime
from pydantic import ValidationError

from core.domain.refund_rules import refund_blocker
from core.guardrails.policy_rules import evaluate
from core.guardrails.provenance import Provenance
from graph.context import RunContext, context_of
from graph.deps import Deps
from graph.reports import report_tool_verdicts
from graph.run_control import checkpoint_before_side_effects
from graph.schemas import ActionRecord
from graph.state import DenialCode, PlannedCall, State
from graph.tools import TOOLS
from nodes.messages import last_ai
from nodes.types import ContextNode

log = logging.getLogger(__name__)


def denial(
    call_id: str, name: str, args: dict[str, Any], code: DenialCode, reason: str
) -> PlannedCall:
    """A call that will not run: its reason code and the reason the model will be told."""
    return PlannedCall(
        call_id=call_id,
        name=name,
        args=args,
        verdict="deny",
        reason=reason,
        code=code,
        approval=None,
    )


def denial_reason_code(reason: str) -> str:
    """The metric code of a denial reason text that carries no `code` of its own.

    For text written before denials carried codes (an `ActionRecord`'s `detail`, plans in
    older checkpoints); a denial made now sets `code`, which is what observability reads.
    """
    lowered = reason.lower()
    for needle, code in (
        ("not available", "tool_not_allowed"),
        ("not valid json", "invalid_json"),
        ("invalid arguments", "invalid_arguments"),
        ("limit reached", "tool_call_limit"),
        ("denied by policy", "policy"),
    ):
        if needle in lowered:
            return code
    return "other"


def judge_call(
    call_id: str,
    name: str,
    raw_args: dict[str, Any],
    deps: Deps,
    *,
    role: str | None = None,
    provenance: Provenance | None = None,
) -> PlannedCall:
    """Decide one well-formed call.

    Args:
        call_id: the model's tool-call id.
        name: the tool the model asked for.
        raw_args: the arguments as the model sent them.
        deps: allowlist, role permissions, rules and settings.
        role: the caller's role; `STEWARD_DEFAULT_ROLE` when None.
        provenance: what the user wrote and already-refunded amounts; without it the
            provenance rules (`order_id_from_user`, `amount_from_user`, `order_refund_total`)
            cannot match. guard_tools always passes it.
    """
    role = role or deps.settings.default_role
    spec = TOOLS.get(name)
    if spec is None or name not in deps.allowed_tools:
        return denial(
            call_id,
            name,
            raw_args,
            "tool_not_allowed",
            f"tool '{name}' is not available to this assistant",
        )
    if name not in deps.tools_for(role):
        return denial(
            call_id,
            name,
            raw_args,
            "role_not_permitted",
            f"tool '{name}' is not permitted for role '{role}'",
        )
    try:
        args = spec.args_model.model_validate(raw_args)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'arguments'}: {err['msg']}"
            for err in exc.errors()
        )
        return denial(
            call_id,
            name,
            raw_args,
            "invalid_arguments",
            f"invalid arguments for {name}: {problems}",
        )
    facts: dict[str, Any] = {**args.model_dump(), "role": role}
    if name == "issue_refund" and provenance is not None:
        facts.update(provenance.refund_facts(facts["order_id"], Decimal(facts["amount"])))
    verdict, matches = evaluate(name, facts, deps.risk_rules, deps.settings)
    if name == "issue_refund" and provenance is not None and verdict != "deny":
        provenance.count(facts["order_id"], Decimal(facts["amount"]))
    codes = [m.code for m in matches if m.action == verdict]
    reason = {
        "allow": "allowed",
        "approve": "requires approval: "
        + "; ".join(m.description or m.code for m in matches if m.action == "approve"),
        "deny": "denied by policy: "
        + "; ".join(m.description or m.code for m in matches if m.action == "deny"),
    }[verdict]
    if codes:
        log.info(
            "tool risk rules matched",
            extra={"tool": name, "verdict": verdict, "reason_codes": codes, "role": role},
        )
    planned = PlannedCall(
        call_id=call_id,
        name=name,
        args=args.model_dump(mode="json"),
        verdict=verdict,
        reason=reason,
        approval=None,
    )
    if verdict == "deny":
        planned["code"] = "policy"
    return planned


async def check_domain(call: PlannedCall, deps: Deps) -> PlannedCall:
    """Deny a refund the order can never allow; hold one that splits a request for a person.

    Both read the database (the authority), not the conversation: the order's state, and the
    split rule (`OrderStore.split_reason`: a refund a reviewer rejected on this order, or the
    order's refunds, in the last 24 hours). The store and the trigger apply them again.
    """
    if call["name"] != "issue_refund" or call["verdict"] == "deny":
        return call
    order_id = str(call["args"].get("order_id", ""))
    amount = str(call["args"].get("amount", ""))
    order = await deps.orders.get_order(order_id)
    blocker = refund_blocker(order, order_id, amount)
    if blocker is not None:
        log.info("refund refused by the order's state", extra={"tool": call["name"]})
        return denial(
            call["call_id"], call["name"], call["args"], "order_state", f"not possible: {blocker}"
        )
    split = await deps.orders.split_reason(order_id, amount)
    if split is None:
        return call
    log.info("refund held: it splits a request", extra={"tool": call["name"]})
    why = f"this refund {split}"
    if call["verdict"] == "approve":
        return {**call, "reason": f"{call['reason']}; {why}"}
    return {**call, "verdict": "approve", "reason": f"requires approval: {why}"}


def denial_message(call: PlannedCall) -> ToolMessage:
    """Tell the model a call was not executed and why."""
    content = json.dumps({"status": "denied", "error": call["reason"]})
    return ToolMessage(
        content=content, tool_call_id=call["call_id"], name=call["name"], status="error"
    )


def denial_record(call: PlannedCall) -> ActionRecord:
    """The audit record of a denied call."""
    return ActionRecord(
        id=call["call_id"],
        name=call["name"],
        args=call["args"],
        status="denied",
        detail=call["reason"],
    )


def make_guard_tools(deps: Deps) -> ContextNode:
    """Build the node that decides, in code, what each requested tool call may do."""

    async def guard_tools(
        state: State, runtime: Runtime[RunContext] | None = None
    ) -> dict[str, Any]:
        """Check every tool call of the latest model turn; deny, allow or hold for approval."""
        role = deps.role_of(context_of(runtime))
        message = last_ai(state["messages"])
        provenance = Provenance.of(state["messages"])
        plan: list[PlannedCall] = []
        for bad in message.invalid_tool_calls:
            plan.append(
                denial(
                    bad.get("id") or "",
                    bad.get("name") or "unknown",
                    {},
                    "invalid_json",
                    "arguments were not valid JSON; send a JSON object matching the schema",
                )
            )
        budget = deps.settings.max_tool_calls - state.get("tool_calls", 0)
        refunded_orders: set[str] = set()
        for call in message.tool_calls:
            call_id = call.get("id") or ""
            if budget <= 0:
                plan.append(
                    denial(
                        call_id,
                        call["name"],
                        call["args"],
                        "tool_call_limit",
                        "tool call limit reached",
                    )
                )
                continue
            budget -= 1
            judged = await check_domain(
                judge_call(
                    call_id, call["name"], call["args"], deps, role=role, provenance=provenance
                ),
                deps,
            )
            order_id = judged["args"].get("order_id") if judged["name"] == "issue_refund" else None
            if order_id is not None and judged["verdict"] != "deny":
                if order_id in refunded_orders:
                    judged = denial(
                        call_id,
                        judged["name"],
                        judged["args"],
                        "duplicate_refund",
                        f"one refund per order per request: {order_id} already has "
                        "one in this reply; combine the amounts into one refund",
                    )
                refunded_orders.add(order_id)
            plan.append(judged)
        denied = [c for c in plan if c["verdict"] == "deny"]
        for entry in denied:
            log.info("tool call denied", extra={"tool": entry["name"], "reason": entry["reason"]})
        await report_tool_verdicts(plan)
        checkpoint_before_side_effects(runtime, plan)
        return {
            "plan": plan,
            "messages": [denial_message(c) for c in denied],
            "actions": [*state.get("actions", []), *(denial_record(c) for c in denied)],
            "tool_calls": state.get("tool_calls", 0) + len(message.tool_calls),
        }

    return guard_tools
