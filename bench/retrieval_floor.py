"""Calibrate the retrieval floor (STEWARD_RETRIEVAL_MIN_SCORE) on the eval datasets.

For every in-scope question of evals/datasets/policy.jsonl and support.jsonl (customer-phrased,
often short: they score lower than the policy set's) and every question of
evals/datasets/out_of_scope.jsonl, plus a held-out set of questions written for this script
and never used to choose the floor (HELD_OUT_IN / HELD_OUT_OUT below), it prints:
  - the cosine score of the best chunk (FAISS inner product on unit vectors), in and out of
    scope, as min / p10 / median / p90 / max;
  - for each in-scope case, the score of the weakest required source (the floor must stay
    below it, or the answer loses its citation);
  - for candidate floors: recall (in-scope cases whose every required source group still has
    a chunk in the top k at or above the floor), and the out-of-scope questions with any
    chunk left (which would be answered from an unrelated chunk);
  - the same for a relative margin (keep chunks within M of the best), to compare.

Usage: python bench/retrieval_floor.py [--k 4] [--floor 0.40]
The index comes from a temporary `steward ingest data/policies` with the local embedder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from core.knowledge.embeddings import LocalEmbedder
from core.knowledge.index import KnowledgeIndex
from core.knowledge.ingest import ingest
from core.knowledge.retriever import FaissRetriever
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT / "evals" / "datasets"
CORPUS = ROOT / "data" / "policies"

HELD_OUT_IN: list[tuple[str, list[str]]] = [
    ("Do you accept cryptocurrency like Bitcoin?", ["payment-methods"]),
    ("Can I ship a backpack with a fuel canister to an APO address?", ["shipping-policy"]),
    ("What happens if my card payment fails when the order ships?", ["payment-methods"]),
    ("My package says delivered but I never got it. What now?", ["lost-packages"]),
    ("Can I return a sleeping bag I used once on a trip?", ["returns-policy"]),
    ("Is a broken zipper on my jacket covered by the warranty?", ["warranty-policy"]),
    ("How do I report a website accessibility problem?", ["accessibility"]),
    ("Can I use more than one gift card on a single order?", ["payment-methods", "gift-cards"]),
    ("How many points do I earn per dollar in the rewards program?", ["loyalty-program"]),
    ("Can an employee use their discount to buy gear for a friend?", ["employee-discounts"]),
    ("When does a support case have to be escalated to a supervisor?", ["escalation-policy"]),
    ("What should I do if a customer emails me their full card number?", ["pii-handling"]),
]
"""Held-out in-scope questions: (question, documents any one of which answers it)."""

HELD_OUT_OUT: list[str] = [
    "What time does the sun set in Denver today?",
    "Can you recommend a good thriller novel?",
    "How do I change a flat tire on my car?",
    "What is the best phone plan for international travel?",
    "Is it legal to fly a drone in a national forest?",
    "How long should I boil an egg?",
    "Explain quantum entanglement in simple terms.",
    "Which airline has the most legroom in economy?",
    "Do you sell fishing licenses?",
    "Can I get my bike serviced at your Portland store?",
    "What's the best way to learn Spanish quickly?",
    "Can you help me write a cover letter?",
]
"""Held-out questions the policies do not cover."""

FLOORS = [0.20, 0.25, 0.30, 0.32, 0.34, 0.36, 0.38, 0.40, 0.42, 0.44, 0.46, 0.48, 0.50]
MARGINS = [0.05, 0.10, 0.15, 0.20]


def load_cases(name: str) -> list[dict[str, Any]]:
    lines = (DATASETS / f"{name}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def groups_of(sources: list[Any]) -> list[list[str]]:
    return [s if isinstance(s, list) else [s] for s in sources]


def stats(values: list[float]) -> str:
    ordered = sorted(values)
    n = len(ordered)

    def q(p: float) -> float:
        return ordered[min(n - 1, int(p * n))]

    return (
        f"n={n:3d} min={ordered[0]:.3f} p10={q(0.10):.3f} "
        f"median={statistics.median(ordered):.3f} p90={q(0.90):.3f} max={ordered[-1]:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=Settings.model_fields["retrieval_k"].default)
    parser.add_argument(
        "--floor", type=float, default=Settings.model_fields["retrieval_min_score"].default
    )
    args = parser.parse_args()
    k: int = args.k

    embedder = LocalEmbedder()
    with tempfile.TemporaryDirectory() as tmp:
        ingest([CORPUS], Path(tmp) / "index", embedder, progress=False)
        index = KnowledgeIndex.load(Path(tmp) / "index", embedder=embedder)
    retriever = FaissRetriever(index, embedder, min_score=-1.0)

    policy = [
        c
        for name in ("policy", "support")
        for c in load_cases(name)
        if c["category"] == "policy" and c["expected"].get("sources")
    ]
    oos = load_cases("out_of_scope")
    in_hits = [retriever.search_sync(c["input"], k=k) for c in policy]
    out_hits = [retriever.search_sync(c["input"], k=k) for c in oos]
    held_in_hits = [retriever.search_sync(q, k=k) for q, _ in HELD_OUT_IN]
    held_out_hits = [retriever.search_sync(q, k=k) for q in HELD_OUT_OUT]

    # The weakest required source of a case: the floor must not exceed it.
    need: list[float] = []
    for case, hits in zip(policy, in_hits, strict=True):
        scores = {h["id"]: h["score"] for h in hits}
        per_group = [
            max((scores.get(s, -1.0) for s in g), default=-1.0)
            for g in groups_of(case["expected"]["sources"])
        ]
        need.append(min(per_group))
    held_need = [
        max((h["score"] for h in hits if h["source"].removesuffix(".md") in docs), default=-1.0)
        for (_, docs), hits in zip(HELD_OUT_IN, held_in_hits, strict=True)
    ]

    def top(hits: list[Any]) -> float:
        return float(hits[0]["score"]) if hits else -1.0

    print(f"k={k}; scores are cosine similarities (FAISS IndexFlatIP on unit vectors)\n")
    print("best chunk, in scope (policy, support)   ", stats([top(h) for h in in_hits]))
    print("weakest required source (policy, support)", stats(need))
    print("best chunk, out of scope              ", stats([top(h) for h in out_hits]))
    print("held out: best chunk, in scope        ", stats([top(h) for h in held_in_hits]))
    print("held out: answering document, in scope", stats(held_need))
    print("held out: best chunk, out of scope    ", stats([top(h) for h in held_out_hits]))

    print("\nin-scope cases closest to the floor (weakest required source):")
    for value, case in sorted(zip(need, policy, strict=True), key=lambda p: p[0])[:6]:
        print(f"  {value:.3f}  {case['id']}")
    print("out-of-scope questions closest to the floor (best chunk):")
    ranked = sorted(zip(out_hits, oos, strict=True), key=lambda p: -top(p[0]))
    for hits, case in ranked[:6]:
        print(f"  {top(hits):.3f}  {case['id']}  -> {hits[0]['id']}")
    print("held-out out-of-scope questions closest to the floor (best chunk):")
    held_ranked = sorted(zip(held_out_hits, HELD_OUT_OUT, strict=True), key=lambda p: -top(p[0]))
    for hits, question in held_ranked[:4]:
        print(f"  {top(hits):.3f}  {question!r}  -> {hits[0]['id']}")

    print("\nfixed floor: recall kept | out of scope answered from a chunk (tuning; held out)")
    for floor in sorted({*FLOORS, args.floor}):
        kept = sum(v >= floor for v in need)
        leaked = sum(top(h) >= floor for h in out_hits)
        held_kept = sum(v >= floor for v in held_need)
        held_leaked = sum(top(h) >= floor for h in held_out_hits)
        mark = "  <- STEWARD_RETRIEVAL_MIN_SCORE" if floor == args.floor else ""
        print(
            f"  {floor:.2f}: recall {kept}/{len(need)}, leaked {leaked}/{len(oos)}"
            f" | held out: recall {held_kept}/{len(held_need)},"
            f" leaked {held_leaked}/{len(held_out_hits)}{mark}"
        )

    print("\nrelative margin (keep chunks within M of the best; no absolute floor):")
    for margin in MARGINS:
        kept = 0
        for case, hits in zip(policy, in_hits, strict=True):
            best = top(hits)
            ids = {h["id"] for h in hits if h["score"] >= best - margin}
            kept += all(ids.intersection(g) for g in groups_of(case["expected"]["sources"]))
        print(
            f"  M={margin:.2f}: recall {kept}/{len(policy)}, out-of-scope questions left with "
            f"a chunk {len(oos)}/{len(oos)} (a margin always keeps the best chunk)"
        )
    gaps_in = [top(h) - float(h[1]["score"]) for h in in_hits if len(h) > 1]
    gaps_out = [top(h) - float(h[1]["score"]) for h in out_hits if len(h) > 1]
    print("\ngap best - second, in scope ", stats(gaps_in))
    print("gap best - second, out of scope", stats(gaps_out))


if __name__ == "__main__":
    main()
