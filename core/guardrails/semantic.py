"""The semantic injection layer: a small classifier over the local sentence embeddings.

The second layer of the injection detector (the first is core.guardrails.injection's rules). A
multinomial logistic regression (benign / prompt_injection / jailbreak) over all-MiniLM-L6-v2
vectors, trained offline by `python -m core.guardrails.train_semantic` on `data/injection/`;
the weights (3 x 384 floats) and the calibrated threshold ship in `injection_model.json` and
are applied with numpy. The score is P(attack) = 1 - P(benign); the larger attack class names
the refusal. Embedding is CPU work: `SemanticDetector.score` runs it in a worker thread and
shares one forward pass between concurrent turns (core.knowledge.batching), and with a
`CachedEmbedder` shared with the retriever the same text is embedded once per turn.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.guardrails.injection import Category
from core.knowledge.batching import Batcher
from core.knowledge.embeddings import Embedder, FloatArray

MODEL_PATH = Path(__file__).with_name("injection_model.json")
CLASSES: tuple[str, str, str] = ("benign", "prompt_injection", "jailbreak")


@dataclass(frozen=True, slots=True)
class SemanticVerdict:
    """What the classifier concluded about one text."""

    score: float
    """P(attack), in [0, 1]."""
    category: Category
    """The more likely attack class (meaningful when the score is high)."""

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
        self._batcher: Batcher[str, SemanticVerdict] = Batcher(self.score_sync)

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

    def score_sync(self, texts: list[str]) -> list[SemanticVerdict]:
        """Blocking: embed `texts` in one pass and score each."""
        if not texts:
            return []
        return self.model.verdicts(self.embedder.embed_queries(list(texts)))

    async def score(self, text: str) -> SemanticVerdict:
        """Score one text off the event loop, in one pass with whatever else waits."""
        return await self._batcher.submit(text)

    async def screen(self, texts: list[str]) -> SemanticVerdict | None:
        """The highest-scoring verdict over a turn's messages (None when there are none)."""
        verdicts = await asyncio.gather(*(self.score(text) for text in texts if text.strip()))
        return max(verdicts, key=lambda v: v.score, default=None)


__all__ = ["CLASSES", "MODEL_PATH", "SemanticDetector", "SemanticModel", "SemanticVerdict"]
