"""Eval cases: the JSONL schema of `evals/datasets/*.jsonl` and how datasets are found and loaded.

One line is one case: an `input` (the user's message), the `approvals` the runner gives when the
graph asks for a person, and the `expected` behaviour that the evaluators check. A multi-turn case
gives `turns` instead (each an `input` with its own `approvals`, sent in order on one thread);
`expected` then checks the last turn's answer (facts, sources, refusal, actions), while the
trajectory, the approvals asked and the safety checks span the whole conversation. An
expectation left out (None) means "not checked by this case", so each evaluator only scores what
a case says.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import StewardError

DATASETS_DIR = Path(__file__).resolve().parent / "datasets"
"""Where `--dataset NAME` looks for `NAME.jsonl`."""

Category = Literal[
    "policy", "refund", "order", "injection", "out_of_scope", "input", "robustness", "conversation"
]

ORDER_ID = re.compile(r"(?<![\w-])LS-\d{4,8}(?![\w-])", re.IGNORECASE)


class DatasetError(StewardError, ValueError):
    """A dataset file is missing, unreadable or holds an invalid case."""


class ExpectedCall(BaseModel):
    """One tool call of the expected trajectory; `args` lists only the arguments that matter."""

    model_config = ConfigDict(extra="forbid")
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class ExpectedAction(BaseModel):
    """One entry expected in `response.actions` (what really happened to a tool call)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    status: Literal["executed", "pending_approval", "rejected", "denied", "failed"]
    args: dict[str, Any] = Field(default_factory=dict)


class Decision(BaseModel):
    """How the runner answers one held action: approve, reject, or edit some arguments."""

    model_config = ConfigDict(extra="forbid")
    type: Literal["approve", "reject", "edit"]
    args: dict[str, Any] = Field(default_factory=dict)
    """For `edit`: arguments that replace the requested ones (the rest are kept)."""
    message: str | None = None


class Expected(BaseModel):
    """What a correct run does; None means the aspect is not checked for this case."""

    model_config = ConfigDict(extra="forbid")
    facts: list[list[str]] | None = None
    """Reference facts of the answer: each inner list holds alternative phrasings of one fact."""
    forbidden: list[str] = Field(default_factory=list)
    """Phrases that must not appear in the answer (a false claim, leaked data)."""
    sources: list[str | list[str]] | None = None
    """Chunk ids the answer must cite (recall); a list entry means "any one of these";
    `[]` means it must cite nothing."""
    acceptable_sources: list[str] = Field(default_factory=list)
    """Further chunk ids that also support the answer (count for precision, not recall)."""
    trajectory: list[ExpectedCall] | None = None
    """Tool calls the model should make, in order; `[]` means none."""
    approval: bool | None = None
    """Whether the run must stop for a person's decision."""
    actions: list[ExpectedAction] | None = None
    """The complete list of `response.actions`, in any order."""
    refusal: str | None = None
    """`"decline"`: the run must refuse (reason code or a declining answer); a reason code such
    as `"empty_input"`: `response.refusal` must be exactly that; `"none"`: must not refuse."""
    forbid_executed: list[str] = Field(default_factory=list)
    """Tools that must not end up `executed` in this run, whatever the approvals say."""
    max_latency_s: float = 15.0
    """Seconds in the graph. The mock run's slowest case takes about 3 s on a busy 2-core
    machine (p95 1.6 s); a case that retries a model call or loops to its tool limit exceeds it."""
    max_cost_usd: float = 0.002
    """USD of the case's model calls: about 3x the costliest case (gpt-4o-mini prices, $0.0006);
    a run that spends its whole model-call budget (8 calls of a full context) exceeds it."""

    @property
    def source_groups(self) -> list[list[str]]:
        """The required citations, each as the list of chunk ids that satisfy it."""
        return [[s] if isinstance(s, str) else list(s) for s in self.sources or []]

    @field_validator("facts")
    @classmethod
    def _facts_have_alternatives(cls, value: list[list[str]] | None) -> list[list[str]] | None:
        if value is not None and any(not alternatives for alternatives in value):
            raise ValueError("every fact needs at least one phrasing")
        return value


UserInput = str | list[dict[str, Any]]
"""A user's message: text, or OpenAI content parts (for non-text input)."""


class Turn(BaseModel):
    """One user message of a multi-turn case, with the decisions for what it holds."""

    model_config = ConfigDict(extra="forbid")
    input: UserInput
    approvals: list[Decision] = Field(default_factory=list)


class EvalCase(BaseModel):
    """One eval case, as written in a dataset's JSONL line."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    category: Category
    input: UserInput | None = None
    """The user's message (a single-turn case)."""
    approvals: list[Decision] = Field(default_factory=list)
    """Decisions for the held actions, consumed in order, one per action request."""
    turns: list[Turn] | None = Field(default=None, min_length=2)
    """A conversation (instead of `input` and `approvals`): the messages in order."""
    expected: Expected
    requires_mock: bool = False
    """The case relies on a `[[mock:...]]` test marker; skipped against a real provider."""
    tags: list[str] = Field(default_factory=list)
    notes: str = ""
    dataset: str = ""
    """Filled in by the loader: the dataset file's stem."""

    @model_validator(mode="after")
    def _one_conversation(self) -> EvalCase:
        if (self.input is None) == (self.turns is None):
            raise ValueError("give either `input` (one turn) or `turns` (a conversation)")
        if self.turns is not None and self.approvals:
            raise ValueError("a multi-turn case gives its approvals in each turn")
        return self

    @property
    def conversation(self) -> list[Turn]:
        """The user's turns in order (one for a single-turn case)."""
        if self.turns is not None:
            return self.turns
        assert self.input is not None  # the validator guarantees one of the two
        return [Turn(input=self.input, approvals=self.approvals)]

    @property
    def order_ids(self) -> frozenset[str]:
        """Order ids the case's messages name; cases sharing one run one after another."""
        text = " ".join(_text_of(turn.input) for turn in self.conversation)
        return frozenset(m.group().upper() for m in ORDER_ID.finditer(text))

    @property
    def input_text(self) -> str:
        """The input as text, for reports and LLM judges (turns joined by ` / `)."""
        return " / ".join(_text_of(turn.input) for turn in self.conversation)


def _text_of(value: UserInput) -> str:
    if isinstance(value, str):
        return value
    return " ".join(str(p.get("text", f"<{p.get('type', 'part')}>")) for p in value)


def resolve_dataset(spec: str | Path, root: Path = DATASETS_DIR) -> Path:
    """Turn `--dataset NAME|PATH` into a file path.

    Raises:
        DatasetError: no such dataset.
    """
    path = Path(spec)
    if path.suffix == ".jsonl" and path.is_file():
        return path
    named = root / f"{spec}.jsonl"
    if named.is_file():
        return named
    known = ", ".join(sorted(p.stem for p in root.glob("*.jsonl"))) or "none"
    raise DatasetError(f"no dataset {spec!r} (a .jsonl path, or one of: {known})")


def load_dataset(path: Path) -> list[EvalCase]:
    """Parse one JSONL dataset; blank lines and lines starting with `//` are skipped.

    Raises:
        DatasetError: a line is not JSON or not a valid case (the message names the line).
    """
    cases: list[EvalCase] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("//"):
            continue
        try:
            case = EvalCase.model_validate({**json.loads(line), "dataset": path.stem})
        except (json.JSONDecodeError, ValidationError) as exc:
            raise DatasetError(f"{path}:{number}: {exc}") from exc
        cases.append(case)
    return cases


def load_cases(
    specs: list[str] | None = None,
    *,
    select: list[str] | None = None,
    root: Path = DATASETS_DIR,
) -> list[EvalCase]:
    """Load the named datasets (all of `root` when none), optionally filtered by id globs.

    Raises:
        DatasetError: a dataset is missing or invalid, or two cases share an id.
    """
    paths = [resolve_dataset(s, root) for s in specs] if specs else sorted(root.glob("*.jsonl"))
    if not paths:
        raise DatasetError(f"no datasets found in {root}")
    cases: list[EvalCase] = []
    seen: dict[str, str] = {}
    for path in paths:
        for case in load_dataset(path):
            if case.id in seen:
                raise DatasetError(f"case id {case.id!r} is in {seen[case.id]} and {path.stem}")
            seen[case.id] = path.stem
            cases.append(case)
    if select:
        cases = [c for c in cases if any(fnmatch.fnmatchcase(c.id, pat) for pat in select)]
    return cases
