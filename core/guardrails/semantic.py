"""The semantic injection layer: a small classifier over the local sentence embeddings.

The second layer of the injection detector (the first is core.guardrails.injection's rules). A
multinomial logistic regression (benign / prompt_injection / jailbreak) over all-MiniLM-L6-v2
vectors, trained offline by `python -m core.guardrails.train_semantic` on `data/injection/`;
the weights (3 x 384 floats) and the calibrated threshold ship in `injection_model.json` and
are applied with numpy. The score is P(attack) = 1 - P(benign); the larger attack class names
the refusal.

A message is scored by its segments, not only as a whole: one vector of a whole message lets
an attack hide behind ordinary sentences (a complaint sentence before "You are now in
maintenance mode..." took its score from 0.97 to 0.36). `segments_of` cuts the message into
sentences (on `.`, `!`, `?` followed by a space, on line breaks and on the boundaries of its
text parts) and scores the whole text, every sentence and every window of two adjacent
sentences, at most `MAX_SEGMENTS` in all (longer messages have their sentences merged into
`MAX_SEGMENTS // 2` contiguous chunks first, so every sentence is still covered); the
message's score is the highest. The training script calibrates the threshold with the same
scoring. Holdout (`python bench/detection_rates.py`, split by clusters of near-duplicates):
74.2% of attacks at 1.2% false positives, and the same with an ordinary complaint sentence
before every row (69.4% with it after); on the earlier split by group, scoring the whole
message only gave 64.6%, 0% and 6.2% against 72.3% with segments.

Embedding is CPU work: `SemanticDetector.score` runs it in a worker thread, all of a
message's segments in one forward pass shared with concurrent turns
(core.knowledge.batching); with a `CachedEmbedder` shared with the retriever the whole
message's vector is remembered (not its segments'), so retrieval does not embed it again.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.guardrails.injection import Category
from core.knowledge.batching import Batcher
from core.knowledge.embeddings import CachedEmbedder, Embedder, FloatArray

MODEL_PATH = Path(__file__).with_name("injection_model.json")
CLASSES: tuple[str, str, str] = ("benign", "prompt_injection", "jailbreak")
MAX_SEGMENTS = 12
"""Most texts scored per message, the whole message included."""
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\s*\n\s*")


def sentences_of(text: str) -> list[str]:
    """`text` cut after `.`, `!` or `?` followed by whitespace, and at line breaks."""
    return [piece.strip() for piece in _SENTENCE_BREAK.split(text) if piece.strip()]


def segments_of(
    text: str, parts: Sequence[str] = (), *, max_segments: int = MAX_SEGMENTS
) -> tuple[str, ...]:
    """The texts a message is scored by: `text` itself first, then its sentences and pairs.

    Args:
        text: the whole message (what retrieval embeds; always the first segment).
        parts: the message's text parts, when it has several: their boundaries are sentence
            boundaries too (parts are joined without a separator, so "...rainfly." and
            "You are now..." would otherwise run together).
        max_segments: most segments returned (at least 1, the whole text).
    """
    units = _merge_short(
        [s for part in (parts if len(parts) > 1 else (text,)) for s in sentences_of(part)]
    )
    if len(units) <= 1:
        return (text,)
    chunks = max(1, max_segments // 2)
    if len(units) > chunks:
        cuts = [len(units) * i // chunks for i in range(chunks + 1)]
        units = [" ".join(units[a:b]) for a, b in itertools.pairwise(cuts) if b > a]
    windows = [f"{a} {b}" for a, b in itertools.pairwise(units)] if len(units) > 2 else []
    out = dict.fromkeys([text, *units, *windows])
    return tuple(out)[:max_segments]


MIN_SEGMENT_WORDS = 4
"""A sentence shorter than this ("Thanks!", "Hi there.") is scored with its neighbour: alone it
carries no instruction, and the classifier's view of a lone word is noise."""


def _merge_short(units: list[str]) -> list[str]:
    merged: list[str] = []
    for unit in units:
        if merged and len(merged[-1].split()) < MIN_SEGMENT_WORDS:
            merged[-1] = f"{merged[-1]} {unit}"
        else:
            merged.append(unit)
    if len(merged) > 1 and len(merged[-1].split()) < MIN_SEGMENT_WORDS:
        last = merged.pop()
        merged[-1] = f"{merged[-1]} {last}"
    return merged


@dataclass(frozen=True, slots=True)
class SemanticVerdict:
    """What the classifier concluded about one text."""

    score: float
    """P(attack), in [0, 1]."""
    category: Category
    """The more likely attack class (meaningful when the score is high)."""
    segment: int = 0
    """Which of the message's segments scored highest (0: the whole text)."""
    segments: int = 1
    """How many segments were scored."""

    def blocked(self, threshold: float) -> bool:
        """True when the score reaches `threshold`."""
        return self.score >= threshold


@dataclass(frozen=True)
class SemanticModel:
    """Logistic-regression weights over sentence embeddings, and the threshold chosen for them."""

    embedding_model: str
    """The embedder the weights were trained on (vectors from another model mean nothing)."""
    weights: FloatArray
    """`(3, dim)`, one row per class in `CLASSES` order."""
    bias: FloatArray
    """`(3,)`."""
    threshold: float
    """P(attack) at which input is refused, calibrated on the tuning split."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Training record: data counts, regularisation, tuning-split rates."""

    @classmethod
    def load(cls, path: Path = MODEL_PATH) -> SemanticModel:
        """Read the shipped weights file."""
        raw = json.loads(path.read_text(encoding="utf-8"))
        if tuple(raw["classes"]) != CLASSES:
            raise ValueError(f"{path}: classes {raw['classes']} are not {list(CLASSES)}")
        weights = np.asarray(raw["weights"], dtype=np.float32)
        bias = np.asarray(raw["bias"], dtype=np.float32)
        if weights.shape != (len(CLASSES), raw["dim"]) or bias.shape != (len(CLASSES),):
            raise ValueError(f"{path}: weights {weights.shape} / bias {bias.shape} malformed")
        return cls(
            embedding_model=raw["embedding_model"],
            weights=weights,
            bias=bias,
            threshold=float(raw["threshold"]),
            meta=dict(raw.get("meta", {})),
        )

    @property
    def dim(self) -> int:
        """The embedding dimension the weights expect."""
        return int(self.weights.shape[1])

    def probabilities(self, vectors: FloatArray) -> FloatArray:
        """`(n, 3)` class probabilities for `(n, dim)` unit vectors."""
        logits = vectors @ self.weights.T + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        probs: FloatArray = (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)
        return probs

    def verdicts(self, vectors: FloatArray) -> list[SemanticVerdict]:
        """One verdict per row of `vectors`."""
        out: list[SemanticVerdict] = []
        for row in self.probabilities(vectors):
            category: Category = "jailbreak" if row[2] > row[1] else "prompt_injection"
            out.append(SemanticVerdict(score=round(float(1.0 - row[0]), 4), category=category))
        return out


class SemanticDetector:
    """Scores texts with a `SemanticModel` over an embedder's query vectors.

    Args:
        embedder: the model the weights were trained on (all-MiniLM-L6-v2); pass the
            retriever's `CachedEmbedder` so the turn's message is embedded once.
        model: the weights; default: the shipped `injection_model.json`, read on first use
            (in the worker thread, never on the event loop).
        threshold: P(attack) at which input is refused; the model's calibrated one by default.
    """

    def __init__(
        self,
        embedder: Embedder,
        model: SemanticModel | None = None,
        *,
        threshold: float | None = None,
    ) -> None:
        self.embedder = embedder
        self._model = model
        self._threshold = threshold
        self._lock = threading.Lock()
        self._batcher: Batcher[tuple[str, ...], SemanticVerdict] = Batcher(self.score_segments)

    @property
    def model(self) -> SemanticModel:
        """The weights (blocking on first use: reads the file).

        Raises:
            ValueError: If the embedder is not the one the weights were trained on.
        """
        if self._model is None:
            with self._lock:
                if self._model is None:
                    self._model = SemanticModel.load()
        if self.embedder.name != self._model.embedding_model:
            raise ValueError(
                f"the injection classifier was trained on {self._model.embedding_model} "
                f"vectors, not {self.embedder.name}"
            )
        return self._model

    @property
    def threshold(self) -> float:
        """P(attack) at which input is refused."""
        return self.model.threshold if self._threshold is None else self._threshold

    def score_segments(self, messages: list[tuple[str, ...]]) -> list[SemanticVerdict]:
        """Blocking: per message (its segments, the whole text first), the top segment's verdict.

        Every segment of every message is embedded in one pass; only the whole texts are
        remembered by a `CachedEmbedder` (retrieval looks them up; segments would evict them).
        """
        if not messages:
            return []
        model = self.model
        flat = [segment for segments in messages for segment in segments]
        if isinstance(self.embedder, CachedEmbedder):
            vectors = self.embedder.embed_queries(flat, remember={m[0] for m in messages})
        else:
            vectors = self.embedder.embed_queries(flat)
        verdicts = model.verdicts(vectors)
        out: list[SemanticVerdict] = []
        start = 0
        for segments in messages:
            mine = verdicts[start : start + len(segments)]
            start += len(segments)
            top = max(range(len(mine)), key=lambda i: mine[i].score)
            out.append(
                SemanticVerdict(
                    score=mine[top].score,
                    category=mine[top].category,
                    segment=top,
                    segments=len(segments),
                )
            )
        return out

    def score_sync(self, texts: Sequence[str]) -> list[SemanticVerdict]:
        """Blocking: score each text by its segments (`segments_of`), all in one pass."""
        return self.score_segments([segments_of(text) for text in texts])

    async def score(self, text: str, parts: Sequence[str] = ()) -> SemanticVerdict:
        """Score one message off the event loop, in one pass with whatever else waits.

        Args:
            text: the whole message.
            parts: its text parts when it has several (their boundaries cut sentences).
        """
        return await self._batcher.submit(segments_of(text, parts))

    async def screen(
        self, texts: Sequence[str], parts: Sequence[Sequence[str]] = ()
    ) -> SemanticVerdict | None:
        """The highest-scoring verdict over a turn's messages (None when there are none).

        Args:
            texts: each message's whole text.
            parts: each message's text parts, aligned with `texts` (optional).
        """
        aligned = list(parts) if parts else [() for _ in texts]
        verdicts = await asyncio.gather(
            *(
                self.score(text, message_parts)
                for text, message_parts in zip(texts, aligned, strict=True)
                if text.strip()
            )
        )
        return max(verdicts, key=lambda v: v.score, default=None)


__all__ = [
    "CLASSES",
    "MAX_SEGMENTS",
    "MODEL_PATH",
    "SemanticDetector",
    "SemanticModel",
    "SemanticVerdict",
    "segments_of",
    "sentences_of",
]
