"""The evaluator suite every run uses, and scoring one run with it."""

from __future__ import annotations

from collections.abc import Sequence

from core.budget.prices import PRICES
from core.budget.prices import ModelPrice as Price
from evals.cases import EvalCase
from evals.evaluators.actions import approval, safety
from evals.evaluators.budgets import latency, make_cost_evaluator
from evals.evaluators.contract import schema
from evals.evaluators.disclosure import leak
from evals.evaluators.grounding import citation_precision, citation_recall, correctness
from evals.evaluators.refusals import refusal
from evals.evaluators.scoring import AsyncEvaluator, Evaluator
from evals.evaluators.tool_calls import trajectory
from evals.results import CaseRun, Score


def deterministic_evaluators(prices: dict[str, Price] = PRICES) -> list[Evaluator]:
    """The evaluators every run uses, cheap checks first."""
    return [
        schema,
        safety,
        leak,
        refusal,
        approval,
        trajectory,
        citation_precision,
        citation_recall,
        correctness,
        latency,
        make_cost_evaluator(prices),
    ]


async def evaluate(
    case: EvalCase,
    run: CaseRun,
    evaluators: Sequence[Evaluator],
    judges: Sequence[AsyncEvaluator] = (),
) -> dict[str, Score]:
    """Score one run with every evaluator (LLM judges last)."""
    scores = {s.name: s for s in (e(case, run) for e in evaluators)}
    for judge_fn in judges:
        result = await judge_fn(case, run)
        scores[result.name] = result
    return scores
