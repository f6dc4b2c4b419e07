"""What an eval run records: the trace of each case, evaluator scores, and the run's summary.

These models are the JSON format of `results.json` and of `evals/baseline.json` (a results file
without traces), so a baseline written by one version can be read by the next.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

SCHEMA_VERSION = 1


class CaseRun(BaseModel):
    """Everything observed while one case ran through the graph (the evaluators' input)."""

    case_id: str
    thread_id: str
    response: dict[str, Any] | None = None
    """`values["response"]` at the end (None if the run failed or still waits for approval)."""
    responses: list[dict[str, Any]] = Field(default_factory=list)
    """The response of every turn that ended, in order (the last one is `response`)."""
    retrieved: list[str] = Field(default_factory=list)
    """Ids of the chunks retrieved in the turn: the only citable ones."""
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    """Every tool call the model asked for, in order: `{id, name, args, invalid}`."""
    approvals_requested: list[list[dict[str, Any]]] = Field(default_factory=list)
    """The `action_requests` of each approval interrupt."""
    decisions: list[dict[str, Any]] = Field(default_factory=list)
    """The decisions the runner sent back, in order."""
    nodes: list[str] = Field(default_factory=list)
    """The graph nodes that ran, in order."""
    messages: list[dict[str, Any]] = Field(default_factory=list)
    """The thread's messages at the end, serialized for the report."""
    refunds: list[dict[str, Any]] = Field(default_factory=list)
    """Refund rows written by this thread (from Postgres)."""
    model_calls: list[dict[str, Any]] = Field(default_factory=list)
    """`{model, input_tokens, output_tokens, cached_tokens}` for every model reply."""
    approval_threshold: float = 500.0
    latency_s: float = 0.0
    """Wall time inside the graph (the turn plus its resumes)."""
    pending_approval: bool = False
    """The run ended waiting for a decision the case did not provide."""
    error: str | None = None


class Score(BaseModel):
    """One evaluator's verdict on one case; `score` None means "not applicable"."""

    name: str
    score: float | None
    passed: bool | None
    comment: str = ""
    value: float | None = None
    """A measured quantity when the evaluator has one (seconds, USD)."""


class CaseResult(BaseModel):
    """A case's scores, measurements and (in results.json) its trace."""

    case_id: str
    dataset: str
    category: str
    input: str
    passed: bool
    error: str | None = None
    scores: dict[str, Score]
    latency_s: float
    cost_usd: float | None
    input_tokens: int
    output_tokens: int
    trace: CaseRun | None = None

    @property
    def failed_evaluators(self) -> list[str]:
        """Names of the evaluators that failed this case."""
        return [name for name, s in self.scores.items() if s.passed is False]


class Distribution(BaseModel):
    """Summary statistics of one per-case quantity."""

    n: int = 0
    mean: float = 0.0
    p50: float = 0.0
    p95: float = 0.0
    max: float = 0.0
    total: float = 0.0


class EvaluatorSummary(BaseModel):
    """Mean score and pass counts of one evaluator over the cases it applies to."""

    n: int
    mean: float
    passed: int
    failed: int


class Summary(BaseModel):
    """The run's aggregate numbers (what `--compare` checks)."""

    cases: int
    passed: int
    failed: int
    errors: int
    pass_rate: float
    evaluators: dict[str, EvaluatorSummary]
    latency_s: Distribution
    cost_usd: Distribution
    input_tokens: int
    output_tokens: int
    by_category: dict[str, dict[str, int]]


class RunInfo(BaseModel):
    """Metadata of one eval run: when, against what, with which settings."""

    run_id: str
    started_at: datetime
    finished_at: datetime
    wall_s: float
    provider: str
    """`mock`, `openai-compatible` or `demo` (the offline scripted model)."""
    model: str
    datasets: list[str]
    concurrency: int
    judge: bool
    config: dict[str, Any] = Field(default_factory=dict)


class RunReport(BaseModel):
    """The whole run: `results.json`; without traces it is a baseline."""

    schema_version: int = SCHEMA_VERSION
    run: RunInfo
    summary: Summary
    cases: list[CaseResult]

    def without_traces(self) -> RunReport:
        """A copy fit to commit as a baseline (no messages, no per-run ids)."""
        cases = [c.model_copy(update={"trace": None}) for c in self.cases]
        return self.model_copy(update={"cases": cases})


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (`q` in 0..100) of `values`; 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def distribution(values: list[float]) -> Distribution:
    """Summarize `values` (mean, p50, p95, max, total)."""
    if not values:
        return Distribution()
    total = sum(values)
    return Distribution(
        n=len(values),
        mean=total / len(values),
        p50=percentile(values, 50),
        p95=percentile(values, 95),
        max=max(values),
        total=total,
    )


def summarize(results: list[CaseResult]) -> Summary:
    """Aggregate case results into the run's summary."""
    names: list[str] = []
    for result in results:
        names.extend(n for n in result.scores if n not in names)
    evaluators: dict[str, EvaluatorSummary] = {}
    for name in names:
        scored = [
            r.scores[name] for r in results if name in r.scores and r.scores[name].score is not None
        ]
        if not scored:
            continue
        evaluators[name] = EvaluatorSummary(
            n=len(scored),
            mean=sum(s.score or 0.0 for s in scored) / len(scored),
            passed=sum(1 for s in scored if s.passed),
            failed=sum(1 for s in scored if s.passed is False),
        )
    totals: Counter[str] = Counter()
    passes: Counter[str] = Counter()
    for result in results:
        totals[result.category] += 1
        passes[result.category] += int(result.passed)
    passed = sum(1 for r in results if r.passed)
    return Summary(
        cases=len(results),
        passed=passed,
        failed=len(results) - passed,
        errors=sum(1 for r in results if r.error),
        pass_rate=passed / len(results) if results else 0.0,
        evaluators=evaluators,
        latency_s=distribution([r.latency_s for r in results]),
        cost_usd=distribution([r.cost_usd for r in results if r.cost_usd is not None]),
        input_tokens=sum(r.input_tokens for r in results),
        output_tokens=sum(r.output_tokens for r in results),
        by_category={c: {"cases": totals[c], "passed": passes[c]} for c in sorted(totals)},
    )
