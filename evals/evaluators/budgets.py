"""Latency and cost, each against the case's budget."""

from __future__ import annotations

from core.budget.prices import PRICES, usage_cost
from core.budget.prices import ModelPrice as Price
from evals.cases import EvalCase
from evals.evaluators.scoring import Evaluator, not_applicable, verdict
from evals.results import CaseRun, Score


def latency(case: EvalCase, run: CaseRun) -> Score:
    """Seconds spent in the graph, against the case's budget."""
    ok = run.latency_s <= case.expected.max_latency_s
    comment = "" if ok else f"over the {case.expected.max_latency_s:g} s budget"
    return verdict("latency", 1.0 if ok else 0.0, ok, comment, value=round(run.latency_s, 4))


def case_cost(run: CaseRun, prices: dict[str, Price] = PRICES) -> float | None:
    """USD of the case's model calls; None if a model has no known price."""
    total = 0.0
    for call in run.model_calls:
        usage = {
            "input_tokens": call.get("input_tokens"),
            "output_tokens": call.get("output_tokens"),
            "input_token_details": {"cache_read": call.get("cached_tokens") or 0},
        }
        cost = usage_cost(usage, str(call.get("model") or ""), prices)
        if cost is None:
            return None
        total += cost
    return total


def make_cost_evaluator(prices: dict[str, Price] = PRICES) -> Evaluator:
    """Build the cost evaluator for a price table."""

    def cost(case: EvalCase, run: CaseRun) -> Score:
        """USD of the case's model calls (usage_metadata x price table), against its budget."""
        dollars = case_cost(run, prices)
        if dollars is None:
            models = sorted({str(c.get("model")) for c in run.model_calls})
            return not_applicable("cost", f"no price for {', '.join(models)}")
        ok = dollars <= case.expected.max_cost_usd
        comment = "" if ok else f"over the ${case.expected.max_cost_usd:g} budget"
        return verdict("cost", 1.0 if ok else 0.0, ok, comment, value=round(dollars, 8))

    return cost
