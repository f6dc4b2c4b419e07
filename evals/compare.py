"""Compare a run with a baseline and decide whether it regressed (what CI gates on).

A run regresses when, over the cases both runs have:

- an evaluator's mean score drops by more than its tolerance (default 0.02; 0.05 for the LLM
  judge, whose verdicts vary between calls);
- a case that passed in the baseline fails now;
- the mean cost per case rises by more than 10 %;
- the p95 latency exceeds 3 x the baseline's p95 plus 2 s (loose on purpose: machines differ).

Cases only in one of the two runs are listed but never count as a regression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from evals.results import CaseResult, RunReport, percentile

DEFAULT_TOLERANCE = 0.02
TOLERANCES: dict[str, float] = {"judge": 0.05}
"""Allowed drop of an evaluator's mean score (absolute, scores are 0..1)."""
COST_INCREASE = 0.10
"""Allowed relative rise of the mean cost per case."""
LATENCY_FACTOR = 3.0
LATENCY_SLACK_S = 2.0

Status = Literal["ok", "regression", "improved"]


@dataclass(frozen=True)
class MetricRow:
    """One compared number."""

    metric: str
    baseline: float
    current: float
    limit: str
    status: Status

    @property
    def delta(self) -> float:
        """Current minus baseline."""
        return self.current - self.baseline


@dataclass
class Comparison:
    """Everything `--compare` found."""

    rows: list[MetricRow] = field(default_factory=list)
    newly_failing: list[CaseResult] = field(default_factory=list)
    newly_passing: list[str] = field(default_factory=list)
    only_in_baseline: list[str] = field(default_factory=list)
    only_in_current: list[str] = field(default_factory=list)

    @property
    def regressed(self) -> bool:
        """True when any metric regressed or a passing case now fails."""
        return bool(self.newly_failing) or any(r.status == "regression" for r in self.rows)


def load_report(path: Path) -> RunReport:
    """Read a results.json or baseline.json."""
    return RunReport.model_validate_json(path.read_text(encoding="utf-8"))


def _means(cases: list[CaseResult]) -> dict[str, float]:
    sums: dict[str, list[float]] = {}
    for case in cases:
        for name, score in case.scores.items():
            if score.score is not None:
                sums.setdefault(name, []).append(score.score)
    return {name: sum(v) / len(v) for name, v in sums.items()}


def compare(
    baseline: RunReport, current: RunReport, tolerances: dict[str, float] | None = None
) -> Comparison:
    """Compare `current` with `baseline` over their common cases."""
    limits = {**TOLERANCES, **(tolerances or {})}
    base_by_id = {c.case_id: c for c in baseline.cases}
    cur_by_id = {c.case_id: c for c in current.cases}
    common = [cid for cid in cur_by_id if cid in base_by_id]
    out = Comparison(
        only_in_baseline=[cid for cid in base_by_id if cid not in cur_by_id],
        only_in_current=[cid for cid in cur_by_id if cid not in base_by_id],
    )
    base_cases = [base_by_id[cid] for cid in common]
    cur_cases = [cur_by_id[cid] for cid in common]

    base_pass = sum(c.passed for c in base_cases) / len(common) if common else 0.0
    cur_pass = sum(c.passed for c in cur_cases) / len(common) if common else 0.0
    out.rows.append(
        MetricRow(
            "pass rate",
            base_pass,
            cur_pass,
            "no case may start failing",
            _status(base_pass, cur_pass, 0.0),
        )
    )
    base_means, cur_means = _means(base_cases), _means(cur_cases)
    for name in sorted(set(base_means) | set(cur_means)):
        tolerance = limits.get(name, DEFAULT_TOLERANCE)
        if name not in cur_means or name not in base_means:
            continue
        out.rows.append(
            MetricRow(
                f"mean {name}",
                base_means[name],
                cur_means[name],
                f"drop <= {tolerance:g}",
                _status(base_means[name], cur_means[name], tolerance),
            )
        )
    out.rows.extend(_cost_and_latency(base_cases, cur_cases))
    for cid in common:
        before, now = base_by_id[cid], cur_by_id[cid]
        if before.passed and not now.passed:
            out.newly_failing.append(now)
        elif now.passed and not before.passed:
            out.newly_passing.append(cid)
    return out


def _status(base: float, cur: float, tolerance: float) -> Status:
    if cur < base - tolerance - 1e-9:
        return "regression"
    return "improved" if cur > base + 1e-9 else "ok"


def _cost_and_latency(base: list[CaseResult], cur: list[CaseResult]) -> list[MetricRow]:
    rows: list[MetricRow] = []
    base_costs = [c.cost_usd for c in base if c.cost_usd is not None]
    cur_costs = [c.cost_usd for c in cur if c.cost_usd is not None]
    if base_costs and cur_costs:
        b, c = sum(base_costs) / len(base_costs), sum(cur_costs) / len(cur_costs)
        worse = c > b * (1 + COST_INCREASE) + 1e-9
        rows.append(
            MetricRow(
                "mean cost per case (USD)",
                b,
                c,
                f"rise <= {COST_INCREASE:.0%}",
                "regression" if worse else ("improved" if c < b - 1e-12 else "ok"),
            )
        )
    if base and cur:
        b95 = percentile([x.latency_s for x in base], 95)
        c95 = percentile([x.latency_s for x in cur], 95)
        limit = b95 * LATENCY_FACTOR + LATENCY_SLACK_S
        rows.append(
            MetricRow(
                "p95 latency (s)",
                b95,
                c95,
                f"<= {LATENCY_FACTOR:g} x baseline + {LATENCY_SLACK_S:g} s",
                "regression" if c95 > limit else "ok",
            )
        )
    return rows


def parse_tolerance(spec: str) -> tuple[str, float]:
    """Parse `EVALUATOR=DROP` (e.g. `correctness=0.05`).

    Raises:
        ValueError: malformed specification.
    """
    name, sep, value = spec.partition("=")
    if not sep or not name:
        raise ValueError(f"expected EVALUATOR=DROP, got {spec!r}")
    return name, float(value)


def render(comparison: Comparison, baseline_name: str) -> list[str]:
    """The comparison as plain text lines (for logs and CI)."""
    lines = [f"compared with {baseline_name}:"]
    width = max(len(r.metric) for r in comparison.rows) if comparison.rows else 10
    for row in comparison.rows:
        lines.append(
            f"  {row.metric:<{width}}  {row.baseline:>10.4g} -> {row.current:<10.4g}"
            f"  ({row.delta:+.4g}; {row.limit})  {row.status.upper()}"
        )
    for case in comparison.newly_failing:
        lines.append(
            f"  REGRESSION {case.case_id}: now fails "
            f"({', '.join(case.failed_evaluators) or case.error or 'error'})"
        )
    for cid in comparison.newly_passing:
        lines.append(f"  improved   {cid}: now passes")
    if comparison.only_in_baseline:
        lines.append(f"  not run this time: {len(comparison.only_in_baseline)} baseline cases")
    if comparison.only_in_current:
        lines.append(f"  new cases: {', '.join(comparison.only_in_current)}")
    lines.append("REGRESSION" if comparison.regressed else "no regression")
    return lines
