"""The trajectory evaluator: the tool calls made, in order, against the expected ones."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from evals.cases import EvalCase, ExpectedCall
from evals.evaluators.arguments import args_match
from evals.evaluators.scoring import not_applicable, verdict
from evals.results import CaseRun, Score


def _as_openai_trajectory(calls: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One assistant message per tool call: grouping into turns is not part of the match."""
    return [
        {
            "role": "assistant",
            "content": "",
            "tool_calls": [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {
                        "name": str(c["name"]),
                        "arguments": json.dumps(c.get("args") or {}, default=str),
                    },
                }
            ],
        }
        for i, c in enumerate(calls)
    ]


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    table = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i, x in enumerate(a):
        for j, y in enumerate(b):
            table[i + 1][j + 1] = (
                table[i][j] + 1 if x == y else max(table[i][j + 1], table[i + 1][j])
            )
    return table[-1][-1]


def trajectory_matches(
    actual: Sequence[Mapping[str, Any]], expected: Sequence[ExpectedCall]
) -> bool:
    """Run agentevals' strict trajectory match, comparing arguments with `args_match`."""
    from agentevals.trajectory.match import create_trajectory_match_evaluator
    from langsmith import tracing_context

    names = {str(c["name"]) for c in actual} | {c.name for c in expected}
    overrides: dict[str, Any] = dict.fromkeys(names, args_match)
    evaluator = create_trajectory_match_evaluator(
        trajectory_match_mode="strict",
        tool_args_match_mode="superset",
        tool_args_match_overrides=overrides,
    )
    reference = [{"name": c.name, "args": c.args} for c in expected]
    with tracing_context(enabled=False):
        result = evaluator(
            outputs=_as_openai_trajectory(actual),
            reference_outputs=_as_openai_trajectory(reference),
        )
    assert isinstance(result, dict)
    return bool(result["score"])


def trajectory(case: EvalCase, run: CaseRun) -> Score:
    """1.0 for the expected tool calls in order; else half the name-sequence overlap."""
    name = "trajectory"
    expected = case.expected.trajectory
    if expected is None:
        return not_applicable(name)
    if run.error and not run.tool_calls:
        return verdict(name, 0.0, False, f"run failed: {run.error}")
    actual = run.tool_calls
    shown = ", ".join(f"{c['name']}({json.dumps(c.get('args'), default=str)})" for c in actual)
    if trajectory_matches(actual, expected):
        return verdict(name, 1.0, True)
    got = [str(c["name"]) for c in actual]
    want = [c.name for c in expected]
    overlap = _lcs(got, want) / max(len(got), len(want))
    return verdict(
        name,
        0.5 * overlap,
        False,
        f"expected {', '.join(want) or 'no tool calls'}; got {shown or 'none'}",
    )
