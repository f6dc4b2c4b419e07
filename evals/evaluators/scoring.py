"""What every evaluator shares: its signature and the three ways it reports a score."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from evals.cases import EvalCase
from evals.results import CaseRun, Score

SIDE_EFFECT_TOOLS = frozenset({"issue_refund"})
"""Tools whose execution changes the world (the rest only read)."""

Evaluator = Callable[[EvalCase, CaseRun], Score]
"""A deterministic evaluator: scores one aspect of a case's run."""
AsyncEvaluator = Callable[[EvalCase, CaseRun], Awaitable[Score]]
"""An evaluator that awaits something, such as the LLM judge."""


def not_applicable(name: str, comment: str = "not checked by this case") -> Score:
    """The score of an evaluator that does not apply to the case.

    Args:
        name: the evaluator's name.
        comment: why it does not apply.
    """
    return Score(name=name, score=None, passed=None, comment=comment)


def verdict(
    name: str, score: float, passed: bool, comment: str = "", value: float | None = None
) -> Score:
    """A score in [0, 1] (rounded to four places) with its pass/fail.

    Args:
        name: the evaluator's name.
        score: the score in [0, 1].
        passed: whether the case passes this evaluator.
        comment: what went wrong, if anything.
        value: the measured quantity (seconds, dollars) for evaluators that have one.
    """
    return Score(name=name, score=round(score, 4), passed=passed, comment=comment, value=value)


def failed_run(name: str, run: CaseRun) -> Score | None:
    """A zero score when the run produced no response, so every check fails visibly.

    Args:
        name: the evaluator's name.
        run: the case's run.

    Returns:
        The failing score, or None when the run has a response to check.
    """
    if run.response is not None:
        return None
    why = (
        f"run failed: {run.error}"
        if run.error
        else (
            "run ended waiting for an approval the case does not give"
            if run.pending_approval
            else "no response"
        )
    )
    return verdict(name, 0.0, False, why)
