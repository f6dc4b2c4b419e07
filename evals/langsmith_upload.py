"""Upload a finished run to LangSmith: the cases as a dataset, the run as an experiment.

Example ids are derived from case ids (uuid5), so uploading again adds only new cases to the
dataset; every upload is a new experiment whose runs link to those examples and carry one
feedback entry per evaluator score.
"""

from __future__ import annotations

import logging
import os
import uuid
from datetime import timedelta
from typing import Any

from evals.cases import EvalCase
from evals.results import RunReport

log = logging.getLogger(__name__)

EXAMPLE_NAMESPACE = uuid.UUID("5f0b6a52-3f44-4a8e-9d0e-7c0a9a1e2b17")
DEFAULT_DATASET = "steward-evals"


def example_id(case_id: str) -> uuid.UUID:
    """The stable LangSmith example id of a case."""
    return uuid.uuid5(EXAMPLE_NAMESPACE, case_id)


def langsmith_configured() -> bool:
    """True when LANGSMITH_API_KEY is set (the standard variable)."""
    return bool(os.environ.get("LANGSMITH_API_KEY"))


def upload(
    report: RunReport,
    cases: list[EvalCase],
    *,
    client: Any | None = None,
    dataset_name: str = DEFAULT_DATASET,
) -> str | None:
    """Upload dataset + experiment; return the experiment name, or None when not configured.

    Args:
        report: the finished run (traces give each run's outputs).
        cases: the cases that ran (inputs and expectations become dataset examples).
        client: a `langsmith.Client`; by default one is built from the LANGSMITH_* variables.
        dataset_name: the LangSmith dataset to create or extend.
    """
    if client is None:
        if not langsmith_configured():
            return None
        from langsmith import Client

        client = Client(auto_batch_tracing=False)
    if client.has_dataset(dataset_name=dataset_name):
        dataset = client.read_dataset(dataset_name=dataset_name)
    else:
        dataset = client.create_dataset(
            dataset_name, description="Steward offline eval cases (evals/datasets/*.jsonl)."
        )
    known = {str(e.id) for e in client.list_examples(dataset_id=dataset.id)}
    new = [
        {
            "id": example_id(c.id),
            "inputs": (
                {"input": c.input}
                if c.turns is None
                else {"turns": [t.model_dump(mode="json", exclude_defaults=True) for t in c.turns]}
            ),
            "reference_outputs": c.expected.model_dump(mode="json", exclude_none=True),
            "metadata": {"case_id": c.id, "category": c.category, "dataset": c.dataset},
        }
        for c in cases
        if str(example_id(c.id)) not in known
    ]
    if new:
        client.create_examples(dataset_id=dataset.id, examples=new)
    run = report.run
    experiment = f"steward-{run.provider}-{run.model}-{run.run_id}"
    project = client.create_project(
        experiment,
        reference_dataset_id=dataset.id,
        metadata={
            "provider": run.provider,
            "model": run.model,
            "eval_run": run.run_id,
            "datasets": run.datasets,
            **run.config,
        },
    )
    for result in report.cases:
        run_id = uuid.uuid4()
        trace = result.trace
        client.create_run(
            id=run_id,
            name="steward-eval-case",
            run_type="chain",
            inputs={"input": result.input},
            project_name=experiment,
            outputs={"response": trace.response if trace else None},
            reference_example_id=example_id(result.case_id),
            start_time=run.started_at,
            end_time=run.started_at + timedelta(seconds=result.latency_s),
            error=result.error,
            extra={
                "metadata": {
                    "case_id": result.case_id,
                    "category": result.category,
                    "cost_usd": result.cost_usd,
                    "passed": result.passed,
                }
            },
        )
        for score in result.scores.values():
            if score.score is None:
                continue
            client.create_feedback(
                run_id,
                key=score.name,
                score=score.score,
                comment=score.comment or None,
                trace_id=run_id,
                session_id=project.id,
            )
    flush = getattr(client, "flush", None)
    if callable(flush):
        flush()
    log.info("uploaded %d cases to LangSmith experiment %s", len(report.cases), experiment)
    return experiment
