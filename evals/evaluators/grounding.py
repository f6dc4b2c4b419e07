"""What the answer says and cites: correctness against the facts, citation precision and recall."""

from __future__ import annotations

from evals.cases import EvalCase
from evals.evaluators.scoring import failed_run, not_applicable, verdict
from evals.evaluators.text import contains
from evals.results import CaseRun, Score

PRECISION_PASS = 0.5
"""Minimum citation precision: at least half of what an answer cites must support it."""
RECALL_PASS = 1.0


def correctness(case: EvalCase, run: CaseRun) -> Score:
    """Fraction of the reference facts the answer states; zero if it says a forbidden phrase."""
    name = "correctness"
    facts, forbidden = case.expected.facts, case.expected.forbidden
    if facts is None and not forbidden:
        return not_applicable(name)
    if (failed := failed_run(name, run)) is not None:
        return failed
    answer = str((run.response or {}).get("answer") or "")
    said = [phrase for phrase in forbidden if contains(answer, phrase)]
    missing = [alts[0] for alts in facts or [] if not any(contains(answer, a) for a in alts)]
    total = len(facts or [])
    score = 1.0 if total == 0 else (total - len(missing)) / total
    notes = []
    if missing:
        notes.append("missing: " + "; ".join(repr(m) for m in missing))
    if said:
        notes.append("says forbidden: " + "; ".join(repr(s) for s in said))
        score = 0.0
    return verdict(name, score, not missing and not said, " | ".join(notes))


def _cited(run: CaseRun) -> list[str]:
    return list(dict.fromkeys(str(s) for s in (run.response or {}).get("sources") or []))


def citation_precision(case: EvalCase, run: CaseRun) -> Score:
    """Share of cited chunks that support the answer (required or acceptable sources)."""
    name = "citation_precision"
    required = case.expected.sources
    if required is None:
        return not_applicable(name)
    if (failed := failed_run(name, run)) is not None:
        return failed
    cited = _cited(run)
    relevant = {s for group in case.expected.source_groups for s in group}
    relevant |= set(case.expected.acceptable_sources)
    if not cited:
        return verdict(name, 1.0, True, "cites nothing")
    unsupported = [s for s in cited if s not in relevant]
    precision = (len(cited) - len(unsupported)) / len(cited)
    comment = f"unsupported: {', '.join(unsupported)}" if unsupported else ""
    return verdict(name, precision, precision >= PRECISION_PASS, comment)


def citation_recall(case: EvalCase, run: CaseRun) -> Score:
    """Share of the required chunks that the answer cites."""
    name = "citation_recall"
    required = case.expected.sources
    if required is None:
        return not_applicable(name)
    if (failed := failed_run(name, run)) is not None:
        return failed
    groups = case.expected.source_groups
    if not groups:
        return verdict(name, 1.0, True, "no source required")
    cited = set(_cited(run))
    missing = [" or ".join(g) for g in groups if not cited.intersection(g)]
    recall = (len(groups) - len(missing)) / len(groups)
    comment = f"missing: {', '.join(missing)}" if missing else ""
    return verdict(name, recall, recall >= RECALL_PASS, comment)
