"""The schema evaluator: the response matches the AgentResponse contract."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from evals.cases import EvalCase
from evals.evaluators.scoring import failed_run, verdict
from evals.results import CaseRun, Score


class _ActionModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    id: str
    name: str
    args: dict[str, Any]
    status: Literal["executed", "pending_approval", "rejected", "denied", "failed"]
    detail: str


class ResponseModel(BaseModel):
    """DESIGN.md's AgentResponse contract, checked independently of the graph's own types."""

    model_config = ConfigDict(extra="forbid", strict=True)
    answer: str = Field(min_length=1)
    sources: list[str]
    actions: list[_ActionModel]
    refusal: str | None


def schema(case: EvalCase, run: CaseRun) -> Score:
    """The response matches the contract and cites only chunks retrieved in this run."""
    name = "schema"
    if (failed := failed_run(name, run)) is not None:
        return failed
    try:
        response = ResponseModel.model_validate(run.response)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return verdict(name, 0.0, False, f"{where}: {first['msg']}")
    problems = [f"cites {s}, not retrieved" for s in response.sources if s not in run.retrieved]
    if response.refusal is not None and (response.actions or response.sources):
        problems.append("a refusal with actions or sources")
    return verdict(name, 0.0 if problems else 1.0, not problems, "; ".join(problems))
