"""The labelled injection data in `data/injection/`: its deterministic split and its loader.

Offline only (training, the bench, tests): the data lives in the checkout, not in the package.
Every row carries a `group` (one for a family of close paraphrases) and its split follows from
the group's hash alone, so paraphrases never straddle two splits and the split is reproducible.
Rows copied from the rule tables in `tests/data/` (which the rules were tuned on) only ever go
to train or tune: the holdout holds phrasings neither layer has seen.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

Split = Literal["train", "tune", "holdout"]

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "injection"
"""`data/injection/` of the checkout: `train.jsonl`, `tune.jsonl`, `holdout.jsonl`, README."""

DILUTION_PREFACE = "Hello, the camping stove I ordered last week arrived with a dented burner."
"""An ordinary complaint in no split, put before or after every holdout row to measure
dilution (bench/detection_rates.py, tests/unit/test_guardrails_semantic.py)."""

RULE_TABLE_SOURCES = frozenset(
    {"tests/data/guardrail_cases.jsonl", "tests/data/guardrail_holdout.jsonl"}
)


def split_of(group: str, source: str) -> Split:
    """The split a row belongs to: 50/20/30 by group hash; rule-table rows 75/25 train/tune."""
    bucket = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) % 100
    if source in RULE_TABLE_SOURCES:
        return "train" if bucket < 75 else "tune"
    if bucket < 50:
        return "train"
    return "tune" if bucket < 70 else "holdout"


def split_path(split: Split, data_dir: Path = DATA_DIR) -> Path:
    """The file holding `split`."""
    return data_dir / f"{split}.jsonl"


def load_split(split: Split, data_dir: Path = DATA_DIR) -> list[dict[str, Any]]:
    """The rows of one split: `text`, `label` (attack|benign), `category`, `kind`, `group`..."""
    text = split_path(split, data_dir).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


__all__ = [
    "DATA_DIR",
    "DILUTION_PREFACE",
    "RULE_TABLE_SOURCES",
    "Split",
    "load_split",
    "split_of",
    "split_path",
]
