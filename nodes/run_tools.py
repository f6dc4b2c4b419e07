"""run_tools: execute the calls the guard allowed or a person approved, once each."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.runtime import Runtime

from core.domain.types import RefundRefused, RefundRequest, action_hash
from core.errors import InvariantViolated
from core.knowledge.types import RetrievedChunk
from graph.context import RunContext, context_of, thread_id_of
from graph.deps import Deps
from graph.run_control import begin_side_effect
from graph.schemas import ActionRecord
from graph.state import PlannedCall, State
from graph.tools import TOOLS
from nodes.types import ConfigContextNode

log = logging.getLogger(__name__)


class ToolOutcome:
    """The result of one executed call: what the model sees and what the audit records."""

    def __init__(
        self, content: Any, *, ok: bool, detail: str, chunks: list[RetrievedChunk] | None = None
    ) -> None:
        self.content = content
        self.ok = ok
        self.detail = detail
        self.chunks = chunks or []


@dataclass(frozen=True, slots=True)
class CallOrigin:
    """Where a call comes from: the thread, the user request (message id), the run, the user."""

    thread_id: str
    request_id: str
    user_id: str | None
    run_id: str | None


def request_id_of(messages: list[Any]) -> str | None:
    """The id of the latest user message: the request the turn's side effects belong to."""
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return message.id
    return None


def run_id_of(config: RunnableConfig) -> str | None:
    """The runs engine's run id (in the config's metadata), when the run has one."""
    raw = (config.get("metadata") or {}).get("run_id")
    try:
        return str(uuid.UUID(str(raw))) if raw else None
    except ValueError:
        return None


async def execute(call: PlannedCall, deps: Deps, origin: CallOrigin) -> ToolOutcome:
    """Run one allowed call against the real services."""
    model = TOOLS[call["name"]].args_model.model_validate(call["args"])
    args = model.model_dump()
    if call["name"] == "search_policies":
        chunks = await deps.retriever.search(args["query"], k=args["k"])
        found = [{"id": c["id"], "title": c["title"], "text": c["text"]} for c in chunks]
        return ToolOutcome(found, ok=True, detail=f"{len(found)} excerpts", chunks=chunks)
    if call["name"] == "get_order":
        order = await deps.orders.get_order(args["order_id"])
        if order is None:
            return ToolOutcome(
                {"error": f"order {args['order_id']} not found"}, ok=False, detail="order not found"
            )
        return ToolOutcome(order, ok=True, detail=f"order {order['order_id']} read")
    if call["name"] == "issue_refund":
        if call["verdict"] != "allow":
            raise InvariantViolated("issue_refund reached run_tools without being allowed")
        try:
            result = await deps.orders.issue_refund(
                RefundRequest(
                    order_id=args["order_id"],
                    amount=Decimal(args["amount"]),
                    reason=args["reason"],
                    thread_id=origin.thread_id,
                    tool_call_id=call["call_id"],
                    request_id=origin.request_id,
                    requested_by=origin.user_id,
                    run_id=origin.run_id,
                    args_hash=action_hash(call["name"], model.model_dump(mode="json")),
                )
            )
        except RefundRefused as exc:
            return ToolOutcome(
                {"status": "failed", "error": exc.message, "code": exc.code},
                ok=False,
                detail=exc.message,
            )
        return ToolOutcome(result, ok=True, detail=f"refund {result['refund_id']}")
    raise InvariantViolated(f"no executor for tool {call['name']}")


def make_run_tools(deps: Deps) -> ConfigContextNode:
    """Build the node that performs side effects; it runs only after its cause is persisted."""

    async def run_tools(
        state: State, config: RunnableConfig, runtime: Runtime[RunContext] | None = None
    ) -> dict[str, Any]:
        """Execute allowed calls; refunds carry an idempotency key of (thread, tool call)."""
        thread_id = thread_id_of(runtime)
        if not thread_id:
            raise InvariantViolated("run_tools needs a thread_id (a checkpointed run)")
        origin = CallOrigin(
            thread_id=thread_id,
            request_id=request_id_of(state["messages"]) or "no-request",
            user_id=context_of(runtime).requester,
            run_id=run_id_of(config),
        )
        messages: list[ToolMessage] = []
        records: list[ActionRecord] = []
        retrieved = list(state.get("retrieved", []))
        for call in state.get("plan", []):
            if call["verdict"] != "allow":
                continue
            if TOOLS[call["name"]].side_effect:
                begin_side_effect(runtime)  # a cancel now waits for this step's checkpoint
            outcome = await execute(call, deps, origin)
            retrieved.extend(outcome.chunks)
            messages.append(
                ToolMessage(
                    content=json.dumps(outcome.content, default=str),
                    tool_call_id=call["call_id"],
                    name=call["name"],
                    status="success" if outcome.ok else "error",
                )
            )
            records.append(
                ActionRecord(
                    id=call["call_id"],
                    name=call["name"],
                    args=call["args"],
                    status="executed" if outcome.ok else "failed",
                    detail=outcome.detail,
                )
            )
            log.info("tool executed", extra={"tool": call["name"], "ok": outcome.ok})
        return {
            "messages": messages,
            "actions": [*state.get("actions", []), *records],
            "retrieved": retrieved,
            "plan": [],
        }

    return run_tools
