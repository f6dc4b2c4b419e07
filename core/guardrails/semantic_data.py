"""The labelled injection data in `data/injection/`: its deterministic split and its loader.

Offline only (training, the bench, tests): the data lives in the checkout, not in the package.
Every row carries a `group` (one for a family of close paraphrases, as written) and a
`cluster`: the groups joined by embedding similarity (`cluster_ids`: single linkage at a cosine
of `NEAR_DUPLICATE_COSINE`), so a paraphrase that was given its own group still lands with its
neighbours. The split follows from the cluster's hash alone (`split_of`), so near-duplicates
never straddle two splits and the split is reproducible. Clusters holding a row copied from the
rule tables in `tests/data/` (which the rules were tuned on), or a row written after a
failure was seen (`FIX_SOURCE`), only ever go to train or tune: the holdout holds phrasings
neither layer has seen and nobody wrote with its failures in mind.
`python -m core.guardrails.resplit_injection` recomputes the clusters and rewrites the files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

Split = Literal["train", "tune", "holdout"]

DATA_DIR = Path(__file__).resolve().parents[2] / "data" / "injection"
"""`data/injection/` of the checkout: `train.jsonl`, `tune.jsonl`, `holdout.jsonl`, README."""

DILUTION_PREFACE = "Hello, the camping stove I ordered last week arrived with a dented burner."
"""An ordinary complaint in no split, put before or after every holdout row to measure
dilution (bench/detection_rates.py, tests/unit/test_guardrails_semantic.py)."""

RULE_TABLE_SOURCES = frozenset(
    {"tests/data/guardrail_cases.jsonl", "tests/data/guardrail_holdout.jsonl"}
)
FIX_SOURCE = "authored-fix"
"""Rows written after a failure was seen (a false positive found by the eval gate, the full
suite or a bench): they have siblings written for the same failure, so, like the rule-table
rows, they only ever go to train or tune, never to the holdout."""
NEVER_HOLDOUT_SOURCES = RULE_TABLE_SOURCES | {FIX_SOURCE}
ROOT = DATA_DIR.parents[1]


NEAR_DUPLICATE_COSINE = 0.85
"""Rows at least this similar (cosine of the local embeddings) share a cluster, hence a split."""


def rule_table_texts() -> frozenset[str]:
    """The texts of the rule tables in `tests/data/`, normalised as `same_text` does."""
    texts: set[str] = set()
    for source in sorted(RULE_TABLE_SOURCES):
        for line in (ROOT / source).read_text(encoding="utf-8").splitlines():
            if line.strip():
                texts.add(same_text(json.loads(line)["text"]))
    return frozenset(texts)


def same_text(text: str) -> str:
    """A text as compared for duplicates: case and surrounding space ignored."""
    return text.strip().lower()


def split_of(cluster: str, *, never_holdout: bool) -> Split:
    """A cluster's split: 50/20/30 by hash; 75/25 train/tune when it must not be in the holdout.

    `never_holdout`: the cluster holds a rule-table row or a fix row.
    """
    bucket = int(hashlib.sha256(cluster.encode()).hexdigest()[:8], 16) % 100
    if never_holdout:
        return "train" if bucket < 75 else "tune"
    if bucket < 50:
        return "train"
    return "tune" if bucket < 70 else "holdout"


def cluster_ids(groups: Sequence[str], similarity: npt.NDArray[np.float64]) -> list[str]:
    """Each row's cluster: the smallest group id among the rows linked to it.

    Rows are linked when they share a group or their cosine similarity (`similarity`, rows x
    rows) is at least `NEAR_DUPLICATE_COSINE`; linkage is transitive (single linkage).
    """
    parent = list(range(len(groups)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, group in enumerate(groups):
        parent[root(i)] = root(first.setdefault(group, i))
    for i, j in zip(*np.nonzero(np.triu(similarity, 1) >= NEAR_DUPLICATE_COSINE), strict=True):
        parent[root(int(i))] = root(int(j))
    smallest: dict[int, str] = {}
    for i, group in enumerate(groups):
        r = root(i)
        smallest[r] = min(smallest.get(r, group), group)
    return [smallest[root(i)] for i in range(len(groups))]


def split_path(split: Split, data_dir: Path = DATA_DIR) -> Path:
    """The file holding `split`."""
    return data_dir / f"{split}.jsonl"


def load_split(split: Split, data_dir: Path = DATA_DIR) -> list[dict[str, Any]]:
    """The rows of one split: `text`, `label`, `category`, `kind`, `group`, `cluster`, `source`."""
    text = split_path(split, data_dir).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


__all__ = [
    "DATA_DIR",
    "DILUTION_PREFACE",
    "FIX_SOURCE",
    "NEAR_DUPLICATE_COSINE",
    "NEVER_HOLDOUT_SOURCES",
    "RULE_TABLE_SOURCES",
    "Split",
    "cluster_ids",
    "load_split",
    "rule_table_texts",
    "same_text",
    "split_of",
    "split_path",
]
