"""What our nodes report, turned into logs, metrics and span events.

Nodes say what happened with fixed codes and records, in two ways, and this module reads both:
- their reports (`graph.reports`, custom callback events): `retrieval` (chunk ids and scores),
  `tool_verdicts` (one verdict per tool call; a denial carries its `code`),
  `approval_decisions` (what a person decided on each held call, and who);
- fields of their state updates whose meaning does not depend on the node that wrote them:
  `refusal` (the reason code of a refused turn), `actions` (the audit records of tool calls,
  by `status`) and `response`.
It never asks which node ran. Metric labels stay small, closed sets: tool names are the
registered tools, denial codes the ones the dashboards know, anything else `other`.
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

GUARD_DENIAL_LABELS = frozenset(
    {"tool_not_allowed", "invalid_json", "invalid_arguments", "tool_call_limit", "policy"}
)
"""Denial codes counted under their own `reason` label; the others count as `other`."""


DECISIONS = frozenset({"approve", "edit", "reject"})
"""The decisions a person can make on a held call (metric label values)."""


def _mappings(value: Any) -> list[Mapping[str, Any]]:
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


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
        actions = outputs.get("actions")
        if isinstance(actions, list):
            self._tool_outcomes(node, actions[node.actions_in :])
        response = outputs.get("response")
        if isinstance(response, Mapping):
            node.run.response = response

    def read_report(self, node: NodeCall, report: Mapping[str, Any]) -> None:
        """Report what `node` told the observer (`graph.reports`); unknown kinds are ignored."""
        kind = report.get("kind")
        if kind == "retrieval":
            self._retrieval_hits(node, _mappings(report.get("hits")))
        elif kind == "tool_verdicts":
            self._tool_verdicts(node, _mappings(report.get("calls")))
        elif kind == "approval_decisions":
            self._approval_decisions(_mappings(report.get("decisions")))

    def approval_requested(self, node: NodeCall) -> None:
        """Report the calls `node` held for a person when it interrupted the run."""
        pending = [
            c for c in node.plan_in if c.get("verdict") == "approve" and c.get("approval") is None
        ]
        for call in pending:
            m.APPROVAL_REQUESTS.labels(tool=tool_label(str(call.get("name")))).inc()
        if pending:
            log.info(
                "approval requested",
                extra=self._extra(
                    node=node.name,
                    tools=[str(c.get("name")) for c in pending],
                    call_ids=[str(c.get("call_id")) for c in pending],
                ),
            )

    def _retrieval_hits(self, node: NodeCall, hits: list[Mapping[str, Any]]) -> None:
        m.RETRIEVAL_HITS.observe(len(hits))
        log.info("retrieval hits", extra=self._extra(count=len(hits), hits=hits))
        if node.span is not None:
            node.span.set_attribute("steward.retrieval.hits", [str(h["id"]) for h in hits])

    def _tool_verdicts(self, node: NodeCall, calls: list[Mapping[str, Any]]) -> None:
        for call in calls:
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

    def _approval_decisions(self, decisions: list[Mapping[str, Any]]) -> None:
        for entry in decisions:
            decision = m.bounded_label(str(entry.get("decision")), DECISIONS)
            m.APPROVAL_DECISIONS.labels(decision=decision).inc()
            log.info(
                "approval applied",
                extra=self._extra(
                    tool=str(entry.get("name")),
                    call_id=entry.get("call_id"),
                    decision=decision,
                    reviewer=entry.get("reviewer"),
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


__all__ = ["DECISIONS", "GUARD_DENIAL_LABELS", "NodeReports", "tool_label"]
