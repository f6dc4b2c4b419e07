"""Train the semantic injection layer offline and write `core/guardrails/injection_model.json`.

Usage: python -m core.guardrails.train_semantic [--fp-target 0.02] [--dilute-train] [--check]

1. Augment train (`augment`, seeded, benign sentences drawn from train's own benign rows):
   every benign row once with another benign sentence before or after it, and the sentences
   of multi-sentence benign rows on their own: two ordinary sentences, or one, are not an
   attack, and the detector scores single sentences and pairs. Diluted attacks (a benign
   sentence before or after each attack, `dilute`) are not added by default: on tune they
   cost detection (45-54% against 74% at 0 false positives) because the whole-text vector
   learns that ordinary complaint sentences weigh towards "attack", which raises benign
   scores and the calibrated threshold; segment scoring already finds the attack sentence.
   `--dilute-train` adds them.
2. Embed train (with its augmentation) and tune with the local all-MiniLM-L6-v2.
3. Fit a class-weighted multinomial logistic regression (benign / prompt_injection /
   jailbreak) on train with numpy (full-batch gradient descent with momentum, L2), once per
   regularisation strength in `LAMBDAS`.
4. On tune, scored as the detector scores (the top of `semantic.segments_of`: the whole
   text, each sentence, each pair of adjacent sentences): per strength, the lowest P(attack)
   threshold whose false-positive rate on tune's benign rows is at most `--fp-target`; keep
   the strength that detects the most tune attacks at its threshold, counting tune's attacks
   as they are and diluted the same way as train's (with benign sentences drawn from tune's
   own benign rows; ties: the stronger regularisation). The false-positive target applies to
   tune's benign rows as written.
The holdout is never read: `train` first installs an audit hook (`sys.addaudithook`) that
raises `PermissionError` on any `open` of `data/injection/holdout*` from this process, so no
loader or import of this script reads it by accident (a guard against accidents, not against
intent: `os.open` with a directory descriptor or a subprocess get past it). `--check` retrains
and fails when the result differs from the shipped file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.guardrails.semantic import (
    CLASSES,
    MAX_SEGMENTS,
    MODEL_PATH,
    SemanticModel,
    segments_of,
    sentences_of,
)
from core.guardrails.semantic_data import DATA_DIR, load_split, split_path
from core.knowledge.embeddings import LOCAL_MODEL_NAME, LocalEmbedder

LAMBDAS = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3)
"""L2 strengths tried (per example, on the weights only)."""
STEPS = 4000
LEARNING_RATE = 2.0
MOMENTUM = 0.9
FP_TARGET = 0.02
"""Default false-positive target on tune's benign rows (two of 117 now). It was raised from 1%
when the clustered split left tune with 94 benign rows: at 1% none could be refused, the
threshold became the single highest benign score, and tune detection read 58.6% against
74.7% at 2% (on that intermediate data, before the short policy questions were added)."""
AUGMENT_SEED = 14
"""Seed of the benign sentences drawn for `augment` (the result is reproducible)."""

Matrix = npt.NDArray[np.float64]


def forbid_holdout(data_dir: Path = DATA_DIR) -> None:
    """Make this process unable to open the holdout split (an audit hook; cannot be removed).

    A guard against accidents (a loader or an import reading it), not against someone set on
    reading it: `os.open` with a directory descriptor or a subprocess get past it.
    """
    forbidden = str(data_dir.resolve() / "holdout")

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open" and args and isinstance(args[0], str | bytes | Path):
            path = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
            if str(Path(path).resolve()).startswith(forbidden):
                raise PermissionError(f"the training script may not read the holdout ({path})")

    sys.addaudithook(hook)


def labels_of(rows: list[dict[str, Any]]) -> npt.NDArray[np.int64]:
    """Class index per row: 0 benign, 1 prompt_injection, 2 jailbreak."""
    index = {name: i for i, name in enumerate(CLASSES)}
    return np.array(
        [0 if r["label"] == "benign" else index[r["category"]] for r in rows], dtype=np.int64
    )


def fit(x: Matrix, y: npt.NDArray[np.int64], lam: float) -> tuple[Matrix, Matrix]:
    """Class-weighted softmax regression; returns `(weights (3, dim), bias (3,))`."""
    n, dim = x.shape
    k = len(CLASSES)
    counts = np.bincount(y, minlength=k).astype(np.float64)
    sample_weight = (n / (k * np.maximum(counts, 1.0)))[y]
    sample_weight /= sample_weight.sum()
    onehot = np.eye(k)[y]
    w = np.zeros((k, dim))
    b = np.zeros(k)
    vw = np.zeros_like(w)
    vb = np.zeros_like(b)
    for _ in range(STEPS):
        logits = x @ w.T + b
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        err = (p - onehot) * sample_weight[:, None]
        gw = err.T @ x + 2 * lam * w
        gb = err.sum(axis=0)
        vw = MOMENTUM * vw - LEARNING_RATE * gw
        vb = MOMENTUM * vb - LEARNING_RATE * gb
        w += vw
        b += vb
    return w, b


def attack_scores(model: SemanticModel, vectors: Matrix) -> Matrix:
    """P(attack) per row."""
    return np.array([v.score for v in model.verdicts(vectors.astype(np.float32))])


def benign_sentences(rows: list[dict[str, Any]]) -> list[str]:
    """The sentences of `rows`' benign texts that read as a sentence (3 to 40 words)."""
    found = [s for r in rows if r["label"] == "benign" for s in sentences_of(r["text"])]
    return sorted({s for s in found if 3 <= len(s.split()) <= 40})


def dilute(
    rows: list[dict[str, Any]], pool: list[str], rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Each attack of `rows` twice: a sentence of `pool` before it, and one after it."""
    out: list[dict[str, Any]] = []
    for r in rows:
        if r["label"] == "attack":
            before, after = (pool[int(i)] for i in rng.integers(len(pool), size=2))
            out.append({**r, "text": f"{before} {r['text']}", "augmented": "preface"})
            out.append({**r, "text": f"{r['text']} {after}", "augmented": "suffix"})
    return out


def augment(
    rows: list[dict[str, Any]], rng: np.random.Generator, *, attacks: bool = False
) -> list[dict[str, Any]]:
    """The rows added to train (see the module docstring); benign sentences come from `rows`.

    Args:
        rows: train's rows.
        rng: the seeded generator that draws the benign sentences.
        attacks: also add every attack diluted (`dilute`).
    """
    pool = benign_sentences(rows)
    out = dilute(rows, pool, rng) if attacks else []
    for r in rows:
        if r["label"] != "benign":
            continue
        other = pool[int(rng.integers(len(pool)))]
        text = f"{other} {r['text']}" if rng.random() < 0.5 else f"{r['text']} {other}"
        out.append({**r, "text": text, "augmented": "benign pair"})
        pieces = sentences_of(r["text"])
        if len(pieces) > 1:
            out += [{**r, "text": piece, "augmented": "benign sentence"} for piece in pieces]
    return out


class SegmentScorer:
    """Scores texts as `SemanticDetector` does: the top P(attack) over `segments_of(text)`."""

    def __init__(self, embedder: LocalEmbedder, texts: list[str]) -> None:
        self.groups = [segments_of(t) for t in texts]
        unique = sorted({s for g in self.groups for s in g})
        vectors = embedder.embed_queries(unique).astype(np.float64)
        self.index = {text: i for i, text in enumerate(unique)}
        self.vectors = vectors

    def scores(self, model: SemanticModel) -> Matrix:
        """P(attack) per text, the highest over its segments."""
        each = attack_scores(model, self.vectors)
        return np.array([max(each[self.index[s]] for s in g) for g in self.groups])


def calibrate(benign: Matrix, fp_target: float) -> float:
    """Lowest threshold (4 decimals) with at most `fp_target` of `benign` scores at or above."""
    allowed = int(np.floor(fp_target * len(benign)))
    ordered = np.sort(benign)[::-1]
    above = ordered[allowed] if allowed < len(ordered) else 0.0
    return round(float(np.floor(above * 10_000) + 1) / 10_000, 4)


def digest(path: Path) -> str:
    """SHA-256 of a data file, recorded so the weights name the data they came from."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def train(fp_target: float, *, dilute_train: bool = False) -> dict[str, Any]:
    """Fit, calibrate and return the JSON document for `injection_model.json`."""
    forbid_holdout()
    train_rows, tune_rows = load_split("train"), load_split("tune")
    rng = np.random.default_rng(AUGMENT_SEED)
    added = augment(train_rows, rng, attacks=dilute_train)
    fitted = train_rows + added
    diluted_tune = dilute(tune_rows, benign_sentences(tune_rows), rng)
    embedder = LocalEmbedder()
    x_train = embedder.embed_queries([r["text"] for r in fitted]).astype(np.float64)
    y_train = labels_of(fitted)
    tune = SegmentScorer(embedder, [r["text"] for r in tune_rows])
    tune_diluted = SegmentScorer(embedder, [r["text"] for r in diluted_tune])
    y_tune = labels_of(tune_rows)

    best: tuple[float, float, float, SemanticModel] | None = None
    for lam in LAMBDAS:
        w, b = fit(x_train, y_train, lam)
        model = SemanticModel(
            embedding_model=LOCAL_MODEL_NAME,
            weights=w.astype(np.float32),
            bias=b.astype(np.float32),
            threshold=1.0,
        )
        scores = tune.scores(model)
        threshold = calibrate(scores[y_tune == 0], fp_target)
        attacks = np.concatenate([scores[y_tune != 0], tune_diluted.scores(model)])
        detection = float(np.mean(attacks >= threshold))
        print(
            f"lambda={lam:g}: threshold {threshold:.4f}, tune detection (as written and "
            f"diluted) {detection:.1%}"
        )
        if best is None or detection > best[1] or (detection == best[1] and lam > best[0]):
            best = (lam, detection, threshold, model)
    assert best is not None
    lam, _, threshold, model = best
    scores = tune.scores(model)
    detection = float(np.mean(scores[y_tune != 0] >= threshold))
    diluted = float(np.mean(tune_diluted.scores(model) >= threshold))
    false_positives = float(np.mean(scores[y_tune == 0] >= threshold))
    kinds = [str(r["augmented"]) for r in added]
    return {
        "classes": list(CLASSES),
        "embedding_model": LOCAL_MODEL_NAME,
        "dim": int(model.weights.shape[1]),
        "threshold": threshold,
        "weights": np.round(model.weights.astype(np.float64), 6).tolist(),
        "bias": np.round(model.bias.astype(np.float64), 6).tolist(),
        "meta": {
            "trainer": "python -m core.guardrails.train_semantic",
            "scoring": "segment-max",
            "max_segments": MAX_SEGMENTS,
            "l2": lam,
            "fp_target": fp_target,
            "train_rows": len(train_rows),
            "train_augmented_rows": {k: kinds.count(k) for k in sorted(set(kinds))},
            "augment_seed": AUGMENT_SEED,
            "tune_rows": len(tune_rows),
            "tune_diluted_attacks": len(diluted_tune),
            "train_sha256": digest(split_path("train")),
            "tune_sha256": digest(split_path("tune")),
            "tune_detection": round(detection, 4),
            "tune_detection_diluted": round(diluted, 4),
            "tune_false_positives": round(false_positives, 4),
        },
    }


def main(argv: list[str] | None = None) -> int:
    """Train and write (or `--check`) the shipped weights."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp-target", type=float, default=FP_TARGET)
    parser.add_argument("--dilute-train", action="store_true", help="add diluted attacks")
    parser.add_argument("--out", type=Path, default=MODEL_PATH)
    parser.add_argument("--check", action="store_true", help="fail if the shipped file differs")
    args = parser.parse_args(argv)
    document = train(args.fp_target, dilute_train=args.dilute_train)
    text = json.dumps(document, separators=(",", ":")) + "\n"
    meta = document["meta"]
    print(
        f"threshold {document['threshold']:.4f} (l2 {meta['l2']:g}): tune detection "
        f"{meta['tune_detection']:.1%}, false positives {meta['tune_false_positives']:.1%}"
    )
    if args.check:
        shipped = SemanticModel.load(args.out)
        same = abs(shipped.threshold - document["threshold"]) < 1e-3
        print("matches the shipped weights" if same else "differs from the shipped weights")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
