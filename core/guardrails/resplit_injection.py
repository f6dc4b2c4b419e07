"""Re-cluster the injection data by embedding similarity and rewrite its three split files.

Usage: python -m core.guardrails.resplit_injection [--check]

Every row of `data/injection/{train,tune,holdout}.jsonl` is embedded with the local
all-MiniLM-L6-v2; rows that share a group or have a cosine of at least
`semantic_data.NEAR_DUPLICATE_COSINE` are joined (single linkage) into a cluster, whose id is
written to each row's `cluster`; each cluster goes to the split its hash gives
(`semantic_data.split_of`), never the holdout when it holds a rule-table text (by its text,
whatever its `source` says) or a fix row (`source` `authored-fix`). No label, text or group
changes, and no rates are read: the split depends on the texts and sources alone. Retrain
afterwards (`python -m core.guardrails.train_semantic`).
`--check` fails when the files on disk differ from what this would write.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from typing import Any

import numpy as np

from core.guardrails.semantic_data import (
    NEVER_HOLDOUT_SOURCES,
    Split,
    cluster_ids,
    load_split,
    rule_table_texts,
    same_text,
    split_of,
    split_path,
)
from core.knowledge.embeddings import LocalEmbedder

SPLITS: tuple[Split, ...] = ("train", "tune", "holdout")
FIELDS = ("text", "label", "category", "kind", "group", "cluster", "source")


def resplit(rows: list[dict[str, Any]]) -> dict[Split, list[dict[str, Any]]]:
    """The rows with their `cluster`, in the split of their cluster, in a stable order."""
    # Unit rows already (LocalEmbedder normalises): their products are the cosines.
    vectors = LocalEmbedder().embed_queries([r["text"] for r in rows]).astype(np.float64)
    clusters = cluster_ids([r["group"] for r in rows], vectors @ vectors.T)
    table_texts = rule_table_texts()
    kept_out = {
        c
        for c, r in zip(clusters, rows, strict=True)
        if r["source"] in NEVER_HOLDOUT_SOURCES or same_text(r["text"]) in table_texts
    }
    out: dict[Split, list[dict[str, Any]]] = {split: [] for split in SPLITS}
    for cluster, row in zip(clusters, rows, strict=True):
        placed = {**row, "cluster": cluster}
        out[split_of(cluster, never_holdout=cluster in kept_out)].append(
            {k: placed.get(k) for k in FIELDS}
        )
    for split_rows in out.values():
        split_rows.sort(key=lambda r: (r["cluster"], r["group"], r["text"]))
    return out


def render(rows: list[dict[str, Any]]) -> str:
    """One JSON object per line, as the files are written."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def main(argv: list[str] | None = None) -> int:
    """Rewrite (or `--check`) the three split files."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the files would change")
    args = parser.parse_args(argv)
    rows = [r for split in SPLITS for r in load_split(split)]
    placed = resplit(rows)
    changed = [s for s in SPLITS if split_path(s).read_text("utf-8") != render(placed[s])]
    for split in SPLITS:
        counts = Counter(r["label"] for r in placed[split])
        print(
            f"{split}: {len(placed[split])} rows, {counts['attack']} attacks, "
            f"{counts['benign']} benign, {len({r['cluster'] for r in placed[split]})} clusters"
        )
    if args.check:
        if changed:
            print(f"would change: {', '.join(changed)}")
        return 1 if changed else 0
    for split in changed:
        split_path(split).write_text(render(placed[split]), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
