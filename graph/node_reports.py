"""What our nodes report in their outputs, turned into logs, metrics and span events.

The nodes say what happened with fixed codes and records, and this module only reads them:
- input_filter: `refusal`, the reason code of a refused turn;
- retrieve: `retrieved`, the chunks found (ids and scores);
- guard_tools: `plan`, one verdict per tool call; a denial carries its `code`;
- approval: `plan` again, held calls released (`approval.decision`) or denied (a reviewer's
  rejection, code `rejected`, or edited arguments the rules deny);
- every node: `actions`, the audit records of tool calls by `status`, and `response`.
Metric labels stay small, closed sets: tool names are the registered tools, denial codes the
ones the dashboards know, anything else `other`.

Which node wrote a `plan` matters (a new verdict and a released approval look alike when a
provider reuses or omits tool-call ids), so the reader keys on the node names, which are
public already (metric labels, streamed `updates`, Studio's graph). A comparison of input and
output instead was tried and lost verdicts on reused ids.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from opentelemetry.trace import Tracer

from core.observability import metrics as m
from core.observability.spans import now_ns, record_tool_span
from graph.run_records import NodeCall
from graph.tools import TOOLS

log = logging.getLogger("steward.run")

RETRIEVE, GUARD_TOOLS, APPROVAL = "retrieve", "guard_tools", "approval"
"""The nodes whose `retrieved` and `plan` outputs are reported (run_tools writes them too)."""

GUARD_DENIAL_LABELS = frozenset(
    {"tool_not_allowed", "invalid_json", "invalid_arguments", "tool_call_limit", "policy"}
)
"""Denial codes counted under their own `reason` label; the others count as `other`."""


def tool_label(name: str) -> str:
    """A bounded metric label for a tool name: registered tools by name, anything else `other`.

    The model chooses tool names; an unbounded label would let it create series at will.
    """
    return m.bounded_label(name, TOOLS)


class NodeReports:
    """Reads one node's output and reports it, with the run's ids on every log line."""

    def __init__(
        self,
        *,
        extra: Callable[..., dict[str, Any]],
        span_attrs: Callable[[], dict[str, str]],
        tracer: Tracer | None,
    ) -> None:
        """Create the reader.

        Args:
            extra: builds a log record's `extra` (the run's ids plus the given fields).
            span_attrs: the run's ids as span attributes.
            tracer: for tool spans; None for no spans.
        """
        self._extra = extra
        self._span_attrs = span_attrs
        self._tracer = tracer

    def read_output(self, node: NodeCall, outputs: Mapping[str, Any]) -> None:
        """Report what `node` returned: refusal, retrieval, verdicts, decisions, tool calls."""
        refusal = outputs.get("refusal")
        if isinstance(refusal, str) and refusal:
            node.run.refusal = refusal
            m.GUARDRAIL_BLOCKS.labels(stage="input", reason=refusal).inc()
            log.warning("input blocked", extra=self._extra(node=node.name, reason_code=refusal))
        if node.name == RETRIEVE and isinstance(outputs.get("retrieved"), list):
            self._retrieval_hits(node, outputs["retrieved"])
        plan = outputs.get("plan")
        if isinstance(plan, list):
            if node.name == GUARD_TOOLS:
                self._tool_verdicts(node, plan)
            elif node.name == APPROVAL:
                self._approval_decisions(node, plan)
        actions = outputs.get("actions")
        if isinstance(actions, list):
            self._tool_outcomes(node, actions[node.actions_in :])
        response = outputs.get("response")
        if isinstance(response, Mapping):
            node.run.response = response

    def approval_requested(self, node: NodeCall) -> None:
        """Report the calls `node` held for a person when it interrupted the run."""
        pending = [
            c for c in node.plan_in if c.get("verdict") == "approve" and c.get("approval") is None
        ]
        for call in pending:
            m.APPROVAL_REQUESTS.labels(tool=tool_label(str(call.get("name")))).inc()
        if pending or node.name == APPROVAL:
            log.info(
                "approval requested",
                extra=self._extra(
                    node=node.name,
                    tools=[str(c.get("name")) for c in pending],
                    call_ids=[str(c.get("call_id")) for c in pending],
                ),
            )

    def _retrieval_hits(self, node: NodeCall, chunks: list[Any]) -> None:
        hits = [
            {"id": str(c.get("id")), "score": round(float(c.get("score") or 0.0), 4)}
            for c in chunks
            if isinstance(c, Mapping)
        ]
        m.RETRIEVAL_HITS.observe(len(hits))
        log.info("retrieval hits", extra=self._extra(count=len(hits), hits=hits))
        if node.span is not None:
            node.span.set_attribute("steward.retrieval.hits", [str(h["id"]) for h in hits])

    def _tool_verdicts(self, node: NodeCall, plan: list[Any]) -> None:
        for call in plan:
            if not isinstance(call, Mapping):
                continue
            tool, verdict = str(call.get("name")), str(call.get("verdict"))
            reason = str(call.get("reason") or "")
            log.info(
                "tool call decided",
                extra=self._extra(
                    tool=tool, call_id=call.get("call_id"), verdict=verdict, reason=reason
                ),
            )
            if verdict == "deny":
                code = m.bounded_label(str(call.get("code")), GUARD_DENIAL_LABELS)
                m.GUARDRAIL_BLOCKS.labels(stage="tool", reason=code).inc()
            if node.span is not None:
                node.span.add_event(
                    "tool call decided",
                    {
                        "gen_ai.tool.name": tool,
                        "steward.tool.verdict": verdict,
                        "steward.tool.reason": reason[:200],
                    },
                )

    def _approval_decisions(self, node: NodeCall, plan: list[Any]) -> None:
        before = {str(c.get("call_id")): c for c in node.plan_in}
        for call in plan:
            if not isinstance(call, Mapping):
                continue
            previous = before.get(str(call.get("call_id")))
            if previous is None or previous.get("verdict") != "approve":
                continue
            approval = call.get("approval")
            if isinstance(approval, Mapping) and previous.get("approval") is None:
                decision, reviewer = str(approval.get("decision")), approval.get("reviewer")
            elif call.get("verdict") == "deny":
                decision, reviewer = "reject", None
            else:
                continue
            m.APPROVAL_DECISIONS.labels(decision=decision).inc()
            log.info(
                "approval applied",
                extra=self._extra(
                    tool=str(call.get("name")),
                    call_id=call.get("call_id"),
                    decision=decision,
                    reviewer=reviewer,
                ),
            )

    def _tool_outcomes(self, node: NodeCall, records: list[Any]) -> None:
        end_ns = now_ns()
        for record in records:
            if not isinstance(record, Mapping):
                continue
            tool, status = str(record.get("name")), str(record.get("status"))
            node.run.actions.append((tool, status))
            m.TOOL_CALLS.labels(tool=tool_label(tool), outcome=status).inc()
            if status not in ("executed", "failed"):
                continue  # denials and rejections were logged as "tool call decided" and
                # "approval applied" when they happened
            log.log(
                logging.INFO if status == "executed" else logging.WARNING,
                f"tool call {status}",
                extra=self._extra(
                    tool=tool,
                    call_id=record.get("id"),
                    status=status,
                    detail=str(record.get("detail") or "")[:300],
                ),
            )
            if node.span is not None and self._tracer is not None:
                # Tools run inside run_tools without callbacks of their own: the span covers
                # the node's execution (steward.tool.timing = "node"), not the call alone.
                record_tool_span(
                    self._tracer,
                    node.span,
                    tool=tool,
                    call_id=str(record.get("id")),
                    failed=status == "failed",
                    start_time=node.start_ns,
                    end_time=end_ns,
                    attributes={
                        "steward.tool.status": status,
                        "steward.tool.timing": "node",
                        **self._span_attrs(),
                    },
                )


__all__ = ["GUARD_DENIAL_LABELS", "NodeReports", "tool_label"]
