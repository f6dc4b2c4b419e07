"""Model-free embeddings: signed feature hashing of words, and OpenAI `input` normalisation."""

from __future__ import annotations

import hashlib
import math
import re
from typing import Any

from core.tokens import count_text_tokens, get_encoding

EMBEDDING_TOKENIZER = "cl100k_base"
"""The tokenizer that decodes token-id inputs and counts embedding tokens."""
_WORD = re.compile(r"\w+")


def embed_text(text: str, dims: int = 256) -> list[float]:
    """Embed text by signed feature hashing of its lower-cased word tokens, L2-normalised.

    Empty text maps to the first unit vector so every embedding has length 1.
    """
    vector = [0.0] * dims
    for word in _WORD.findall(text.lower()):
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vector[digest % dims] += -1.0 if digest >> 63 else 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


def embedding_inputs(raw: Any) -> tuple[list[str], int]:
    """Normalise `input` (text, texts, token ids or lists of token ids) to texts and a count."""
    encoding = get_encoding(EMBEDDING_TOKENIZER)
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ValueError("input must be a non-empty string, list of strings or token lists.")
    texts: list[str] = []
    tokens = 0
    for item in raw:
        if isinstance(item, str):
            texts.append(item)
            tokens += count_text_tokens(item, encoding)
        elif isinstance(item, list) and all(isinstance(t, int) for t in item):
            try:
                texts.append(encoding.decode(item))
            except (KeyError, ValueError, OverflowError) as exc:
                raise ValueError("input contains token ids outside the vocabulary.") from exc
            tokens += len(item)
        else:
            raise ValueError("input items must be strings or lists of token ids.")
    return texts, tokens


__all__ = ["EMBEDDING_TOKENIZER", "embed_text", "embedding_inputs"]
