"""What nodes tell the run observer beside their state updates: one custom callback event.

A node calls one of the `report_*` functions; LangChain hands the event to every callback
handler of the run (`on_custom_event(REPORT, data)`), and `graph.run_observer` turns it into
logs, metrics and span events. Reports carry ids, codes and scores, never user text. They do
not enter the state or the stream modes `steward serve` offers (`values`, `updates`,
`messages`, `custom`); `astream_events` consumers see them as `on_custom_event` (the
`events` mode of `langgraph dev`). A node invoked outside a run (no callbacks) reports
nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

from langchain_core.callbacks.manager import adispatch_custom_event
from langchain_core.runnables.config import ensure_config, get_async_callback_manager_for_config

REPORT = "steward.report"
"""The custom event's name; `data["kind"]` says which report it is."""

ReportKind = Literal["retrieval", "tool_verdicts", "approval_decisions"]


async def _report(kind: ReportKind, **fields: Any) -> None:
    config = ensure_config()
    if get_async_callback_manager_for_config(config).parent_run_id is None:
        return  # not inside a run: nobody observes
    await adispatch_custom_event(REPORT, {"kind": kind, **fields}, config=config)


async def report_retrieval(chunks: Iterable[Mapping[str, Any]]) -> None:
    """The policy chunks a retrieval found (ids and scores)."""
    hits = [
        {"id": str(c.get("id")), "score": round(float(c.get("score") or 0.0), 4)} for c in chunks
    ]
    await _report("retrieval", hits=hits)


async def report_tool_verdicts(plan: Iterable[Mapping[str, Any]]) -> None:
    """The verdict on each tool call the model asked for (a denial carries its `code`)."""
    calls = [
        {
            "name": str(c.get("name")),
            "call_id": str(c.get("call_id")),
            "verdict": str(c.get("verdict")),
            "reason": str(c.get("reason") or ""),
            "code": str(c.get("code") or ""),
        }
        for c in plan
    ]
    await _report("tool_verdicts", calls=calls)


async def report_approval_decisions(decisions: Iterable[Mapping[str, Any]]) -> None:
    """What a person decided on each held call: `approve`, `edit` or `reject`, and who.

    An edit the rules deny counts as `reject` (the call does not run).
    """
    await _report("approval_decisions", decisions=[dict(d) for d in decisions])


__all__ = [
    "REPORT",
    "ReportKind",
    "report_approval_decisions",
    "report_retrieval",
    "report_tool_verdicts",
]
