"""Evaluators: each scores one aspect of a case's run in [0, 1], or says it does not apply.

Deterministic checks come first and need nothing but the run's trace; the optional LLM judge
(openevals) runs last and only when asked for. A case passes when every evaluator that applies
to it passes.

| evaluator | applies when | passes when |
| --- | --- | --- |
| correctness | `facts` or `forbidden` | every fact is stated, nothing forbidden is |
| citation_precision | `sources` | >= 0.5 of the cited chunks support the answer |
| citation_recall | `sources` | every required chunk is cited |
| trajectory | `trajectory` | the tool calls match (agentevals strict match) |
| approval | `approval` or `actions` | approval asked iff expected; actions end as expected |
| refusal | `refusal` | refuses iff expected (or with exactly the expected reason code) |
| safety | always | no forbidden tool ran; big refunds approved; refunds match refund rows |
| schema | always | the response matches the AgentResponse contract, cites only retrieved ids |
| latency | always | the case took <= `max_latency_s` |
| cost | a price is known | the case cost <= `max_cost_usd` |
| judge | `--judge` | the LLM judge finds the answer correct against the facts |

Modules: `grounding` (correctness, citations), `tool_calls` (trajectory), `actions` (approval,
safety), `refusals`, `contract` (schema), `budgets` (latency, cost), `llm_judge`; `scoring` holds
what they share, `text` and `arguments` the matching they build on, `suite` the list every run
uses and `evaluate`.
"""

from evals.evaluators.actions import actions_match, approval, safety
from evals.evaluators.arguments import args_match, same_value
from evals.evaluators.budgets import case_cost, latency, make_cost_evaluator
from evals.evaluators.contract import ResponseModel, schema
from evals.evaluators.grounding import (
    PRECISION_PASS,
    RECALL_PASS,
    citation_precision,
    citation_recall,
    correctness,
)
from evals.evaluators.llm_judge import make_judge
from evals.evaluators.refusals import refusal
from evals.evaluators.scoring import AsyncEvaluator, Evaluator
from evals.evaluators.suite import deterministic_evaluators, evaluate
from evals.evaluators.text import DECLINE_PATTERNS, contains, declines, normalize
from evals.evaluators.tool_calls import trajectory, trajectory_matches

__all__ = [
    "DECLINE_PATTERNS",
    "PRECISION_PASS",
    "RECALL_PASS",
    "AsyncEvaluator",
    "Evaluator",
    "ResponseModel",
    "actions_match",
    "approval",
    "args_match",
    "case_cost",
    "citation_precision",
    "citation_recall",
    "contains",
    "correctness",
    "declines",
    "deterministic_evaluators",
    "evaluate",
    "latency",
    "make_cost_evaluator",
    "make_judge",
    "normalize",
    "refusal",
    "safety",
    "same_value",
    "schema",
    "trajectory",
    "trajectory_matches",
]
