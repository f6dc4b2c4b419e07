"""What a finished run reports: its outcome, totals and actions, in metrics, a log line, a span."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from core.observability import metrics as m
from core.observability.spans import mark_error
from graph.run_records import RunCall

log = logging.getLogger("steward.run")


def report_run_end(
    run: RunCall,
    outcome: str,
    error: BaseException | None,
    *,
    extra: Callable[..., dict[str, Any]],
) -> None:
    """Count the run by outcome, log "run finished" (or "run failed") and end its span.

    Args:
        run: the finished run, with the totals and records gathered while it ran.
        outcome: `success`, `refused`, `interrupted`, `cancelled`, `error`, or `checkpointed`
            (a pass that stopped to save its checkpoint before a side effect; the next pass
            of the same run reports how it ends).
        error: what the run raised, if anything.
        extra: builds a log record's `extra` (the run's ids plus the given fields).
    """
    seconds = time.perf_counter() - run.started
    m.RUNS.labels(outcome=outcome).inc()
    m.RUN_SECONDS.labels(outcome=outcome).observe(seconds)
    fields: dict[str, Any] = {
        "graph": run.name,
        "run_kind": run.kind,
        "outcome": outcome,
        "duration_ms": round(seconds * 1000, 2),
        "llm_calls": run.llm_calls,
        "input_tokens": run.input_tokens,
        "output_tokens": run.output_tokens,
        "cost_usd": round(run.cost_usd, 8),
        "actions": [{"tool": tool, "status": status} for tool, status in run.actions],
    }
    if run.refusal:
        fields["refusal"] = run.refusal
    if run.response is not None:
        fields["sources"] = list(run.response.get("sources") or [])
        fields["answer_chars"] = len(str(run.response.get("answer") or ""))
    if outcome == "error" and error is not None:
        log.error(
            "run failed",
            exc_info=error,
            extra=extra(error_type=type(error).__name__, **fields),
        )
    else:
        log.info("run finished", extra=extra(**fields))
    if run.span is not None:
        run.span.set_attributes(
            {
                "steward.outcome": outcome,
                "gen_ai.usage.input_tokens": run.input_tokens,
                "gen_ai.usage.output_tokens": run.output_tokens,
                "steward.cost_usd": run.cost_usd,
                "steward.llm_calls": run.llm_calls,
            }
        )
        if outcome == "error" and error is not None:
            mark_error(run.span, error)
        run.span.end()


__all__ = ["report_run_end"]
