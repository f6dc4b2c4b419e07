"""The optional LLM-as-judge evaluator (openevals), run last and only when asked for."""

from __future__ import annotations

from typing import Any

from evals.cases import EvalCase
from evals.evaluators.scoring import AsyncEvaluator, failed_run, not_applicable, verdict
from evals.results import CaseRun, Score


def make_judge(chat_model: Any) -> AsyncEvaluator:
    """Build the optional LLM-as-judge evaluator (openevals' correctness prompt).

    Args:
        chat_model: a LangChain chat model supporting `with_structured_output`.
    """
    from openevals.llm import create_async_llm_as_judge
    from openevals.prompts import CORRECTNESS_PROMPT

    grade = create_async_llm_as_judge(
        prompt=CORRECTNESS_PROMPT,
        judge=chat_model,
        feedback_key="judge",
        continuous=False,
    )

    async def judge(case: EvalCase, run: CaseRun) -> Score:
        """Ask the judge model whether the answer is correct given the reference facts."""
        if case.expected.facts is None:
            return not_applicable("judge")
        if (failed := failed_run("judge", run)) is not None:
            return failed
        reference = "; ".join(" / ".join(alts) for alts in case.expected.facts)
        from langsmith import tracing_context

        try:
            with tracing_context(enabled=False):
                result = await grade(
                    inputs=case.input_text,
                    outputs=str((run.response or {}).get("answer") or ""),
                    reference_outputs=f"The answer must state: {reference}",
                )
        except Exception as exc:  # noqa: BLE001 - a judge failure must not stop the run
            return not_applicable("judge", f"judge failed: {type(exc).__name__}: {exc}")
        assert isinstance(result, dict)
        ok = bool(result.get("score"))
        return verdict("judge", 1.0 if ok else 0.0, ok, str(result.get("comment") or "")[:500])

    return judge
