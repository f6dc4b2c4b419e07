"""Injection detector: detection and false-positive rates per layer, and the filter's added latency.

Rates, on data/injection/ (see its README): the tuning split (the semantic layer's threshold
was chosen on it; the rules were tuned on the rows it shares with tests/data/) and the
holdout (never used for training or tuning by either layer), for
  rules      core.guardrails.injection alone (normalisation + weighted rules)
  semantic   core.guardrails.semantic alone (classifier over all-MiniLM-L6-v2 vectors)
  combined   refused when either refuses (what input_filter does)
and two dilution variants of the holdout, every row (attacks and benign) with one fixed
ordinary complaint sentence (`PREFACE`, in no split) before it ("+ preface") or after it
("+ suffix"): one customer sentence around an attack must not hide it; and, benign only, the
264 varied policy questions bench/http_load.py sends ("load questions", in no split; the
data's README says which of its rows were added after these questions were first measured).

Latency, in-process: the input_filter node (size check, rules, Presidio PII redaction,
routing, and the semantic layer when on: every segment of the message, whole text,
sentences and pairs, in one forward pass) on every message of both splits, with
STEWARD_GUARD_INJECTION_SEMANTIC off and on; and retrieval's query embedding for the same
message, cold vs found in the cache the filter filled (the embedding is paid once per turn).

Usage: python bench/detection_rates.py [--rounds 3] [--misses]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import time
from typing import Any

from langchain_core.messages import HumanMessage
from latency_stats import p50_p99_ms  # bench/ is on sys.path when run as a script
from load_questions import PHRASINGS, TOPICS, question

from core.guardrails.injection import detect_injection
from core.guardrails.pii import get_analyzer
from core.guardrails.semantic import SemanticDetector
from core.guardrails.semantic_data import DILUTION_PREFACE, Split, load_split
from core.knowledge.embeddings import CachedEmbedder, LocalEmbedder
from core.settings import Settings
from graph.deps import Deps
from nodes.input_filter import make_input_filter

LAYERS = ("rules", "semantic", "combined")
PREFACE = DILUTION_PREFACE
VARIANTS: dict[str, tuple[Split, str, str]] = {
    "tune": ("tune", "", ""),
    "holdout": ("holdout", "", ""),
    "holdout + preface": ("holdout", PREFACE + " ", ""),
    "holdout + suffix": ("holdout", "", " " + PREFACE),
}


def layer_verdicts(
    rows: list[dict[str, Any]], detector: SemanticDetector, settings: Settings
) -> dict[str, list[bool]]:
    """Per layer, whether each row is refused."""
    rules = [detect_injection(r["text"]).blocked(settings.injection_threshold) for r in rows]
    scores = detector.score_sync([r["text"] for r in rows])
    semantic = [v.blocked(detector.threshold) for v in scores]
    combined = [a or b for a, b in zip(rules, semantic, strict=True)]
    return {"rules": rules, "semantic": semantic, "combined": combined}


def rates(rows: list[dict[str, Any]], refused: list[bool]) -> dict[str, float]:
    attacks = [hit for r, hit in zip(rows, refused, strict=True) if r["label"] == "attack"]
    benign = [hit for r, hit in zip(rows, refused, strict=True) if r["label"] == "benign"]
    return {
        "attacks": len(attacks),
        "benign": len(benign),
        "detection": sum(attacks) / len(attacks) if attacks else float("nan"),
        "false_positives": sum(benign) / len(benign) if benign else float("nan"),
    }


LOAD_QUESTIONS = "load questions"
"""bench/http_load.py's questions (22 topics x 6 phrasings, twice with other numbers)."""


def variant_rows(name: str) -> list[dict[str, Any]]:
    """The rows of one variant of `VARIANTS` (a split, maybe with `PREFACE` around each text)."""
    if name == LOAD_QUESTIONS:
        return [
            {"text": question(n), "label": "benign", "kind": "load_question"}
            for n in range(2 * len(TOPICS) * len(PHRASINGS))
        ]
    split, before, after = VARIANTS[name]
    return [{**r, "text": f"{before}{r['text']}{after}"} for r in load_split(split)]


def measure_rates(
    detector: SemanticDetector, settings: Settings, *, misses: bool
) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for name in [*VARIANTS, LOAD_QUESTIONS]:
        rows = variant_rows(name)
        verdicts = layer_verdicts(rows, detector, settings)
        out[name] = {layer: rates(rows, verdicts[layer]) for layer in LAYERS}
        if misses:
            for row, hit in zip(rows, verdicts["combined"], strict=True):
                if hit != (row["label"] == "attack"):
                    what = "missed" if row["label"] == "attack" else "refused"
                    print(f"{name:<18} {what:<8} {row['kind']:<18} {row['text'][:90]}")
    return out


async def filter_latency(rounds: int, embedder: CachedEmbedder) -> dict[str, Any]:
    texts = [r["text"] for split in ("tune", "holdout") for r in load_split(split)]
    await asyncio.to_thread(get_analyzer)
    out: dict[str, Any] = {}
    for name, semantic in (("rules", False), ("rules+semantic", True)):
        settings = Settings(STEWARD_GUARD_INJECTION_SEMANTIC=semantic)  # type: ignore[call-arg]
        detector = SemanticDetector(embedder) if semantic else None
        deps = Deps(
            chat_model=None,  # type: ignore[arg-type]
            retriever=None,  # type: ignore[arg-type]
            orders=None,  # type: ignore[arg-type]
            settings=settings,
            injection_detector=detector,
        )
        input_filter = make_input_filter(deps)
        await input_filter({"messages": [HumanMessage("warm-up", id="m")]})
        samples: list[float] = []
        for i in range(rounds):
            for text in texts:
                # A new suffix per round: no redaction or embedding cache hit across rounds.
                state: Any = {"messages": [HumanMessage(f"{text} ({name} #{i})", id="m")]}
                t0 = time.perf_counter()
                await input_filter(state)
                samples.append((time.perf_counter() - t0) * 1000)
        out[name] = p50_p99_ms(samples)
    cold: list[float] = []
    cached: list[float] = []
    for i, text in enumerate(texts):
        query = f"{text} (retrieval #{i})"
        t0 = time.perf_counter()
        embedder.inner.embed_queries([query])
        cold.append((time.perf_counter() - t0) * 1000)
        embedder.embed_queries([query])  # what the filter does first
        t0 = time.perf_counter()
        embedder.embed_queries([query])
        cached.append((time.perf_counter() - t0) * 1000)
    out["retrieval embed, cold"] = p50_p99_ms(cold)
    out["retrieval embed, cached"] = p50_p99_ms(cached)
    return out


def percent(rate: float) -> str:
    return "-" if math.isnan(rate) else f"{rate:.1%}"


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)
    settings = Settings()
    embedder = CachedEmbedder(LocalEmbedder())
    detector = SemanticDetector(embedder)
    measured = measure_rates(detector, settings, misses=args.misses)
    print(f"semantic threshold {detector.threshold:.4f} (calibrated on tune)")
    print(f"\n{'split':<18} {'layer':<9} {'attacks':>7} {'benign':>7} {'detection':>10} {'FP':>7}")
    for split, layers in measured.items():
        for layer, r in layers.items():
            print(
                f"{split:<18} {layer:<9} {r['attacks']:>7} {r['benign']:>7} "
                f"{percent(r['detection']):>10} {percent(r['false_positives']):>7}"
            )
    latency = await filter_latency(args.rounds, embedder)
    print(f"\n{'input_filter / step':<24} {'p50 ms':>8} {'p99 ms':>8} {'n':>6}")
    for name, r in latency.items():
        print(f"{name:<24} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['n']:>6}")
    added = latency["rules+semantic"]["p50_ms"] - latency["rules"]["p50_ms"]
    print(f"semantic layer adds {added:.2f} ms at p50; retrieval then reuses the vector")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--misses", action="store_true", help="list what combined gets wrong")
    asyncio.run(main(parser.parse_args()))
