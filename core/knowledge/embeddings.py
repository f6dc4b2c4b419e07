"""Text embedders: the bundled model on ONNX Runtime, or an OpenAI-compatible API."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import threading
from collections import OrderedDict
from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from core.knowledge import onnx_bundle
from core.knowledge.onnx_bundle import LOCAL_MODEL_NAME, default_bundle_dir

if TYPE_CHECKING:
    from langchain_openai import OpenAIEmbeddings

    from core.settings import Settings

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

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
    """all-MiniLM-L6-v2 on CPU with ONNX Runtime, from its export (`core.knowledge.onnx_bundle`).

    The model loads lazily on first use, exporting it first (in a child process, the only
    place torch is imported) when this install has no export yet. Loading is thread-safe and
    so is encoding: the tokenizer's settings are fixed when it loads, and ONNX Runtime runs
    sessions from several threads at once (with the GIL released).

    Args:
        bundle_dir: the export's folder (default: the install's, `default_bundle_dir()`).
        batch_size: most texts in one forward pass; more are sorted by length and split.
        threads: ONNX Runtime threads per forward pass (default: up to 2). They do not spin
            between passes, so idle threads cost nothing.
    """

    def __init__(
        self, bundle_dir: str | Path | None = None, *, batch_size: int = 8, threads: int = 0
    ) -> None:
        self._bundle = Path(bundle_dir) if bundle_dir is not None else default_bundle_dir()
        self._batch_size = batch_size
        self._threads = threads or min(2, os.cpu_count() or 1)
        self._session: Any = None
        self._tokenizer: Any = None
        self._load_lock = threading.Lock()

    @property
    def name(self) -> str:
        """Model identifier recorded in the index manifest."""
        return LOCAL_MODEL_NAME

    @property
    def dim(self) -> int:
        """Vector dimension (384)."""
        return LOCAL_MODEL_DIM

    @property
    def loaded(self) -> bool:
        """Whether the model has been loaded yet."""
        return self._session is not None

    def _load(self) -> tuple[Any, Any]:
        if self._session is None:
            with self._load_lock:
                if self._session is None:
                    self._open()
        return self._session, self._tokenizer

    def _open(self) -> None:
        import onnxruntime
        from tokenizers import Tokenizer

        if not onnx_bundle.is_current(self._bundle):
            _export_in_child(self._bundle)
        manifest = onnx_bundle.read_manifest(self._bundle)
        if manifest is None or manifest.get("dim") != LOCAL_MODEL_DIM:
            raise ValueError(f"{self._bundle} holds no export of {LOCAL_MODEL_NAME}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self._threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        logger.info("loading embedding model from %s", self._bundle)
        session = onnxruntime.InferenceSession(
            str(self._bundle / onnx_bundle.ONNX_FILE),
            options,
            providers=["CPUExecutionProvider"],
        )
        self._tokenizer = Tokenizer.from_file(str(self._bundle / onnx_bundle.TOKENIZER_FILE))
        self._session = session

    def _forward(self, texts: list[str]) -> FloatArray:
        session, tokenizer = self._load()
        encodings = tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        types = np.array([e.type_ids for e in encodings], dtype=np.int64)
        feeds = dict(zip(onnx_bundle.INPUTS, (ids, mask, types), strict=True))
        [hidden] = session.run(None, feeds)
        weights = mask[..., None].astype(np.float32)
        summed = (np.asarray(hidden, dtype=np.float32) * weights).sum(axis=1)
        means = summed / np.clip(weights.sum(axis=1), 1e-9, None)
        return normalize_rows(means, LOCAL_MODEL_DIM)

    def _encode(self, texts: list[str]) -> FloatArray:
        if len(texts) <= self._batch_size:
            return self._forward(texts)
        # Passes of similar lengths pad less: over the shuffled segments of 32 concurrent
        # questions, passes of 8 cost 4.7 ms of CPU per text against 5.9 for one pass of 32
        # (passes of 4 or 16: 5.2-6.2). Rows go back to the caller's order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.empty((len(texts), LOCAL_MODEL_DIM), dtype=np.float32)
        for at in range(0, len(order), self._batch_size):
            rows = order[at : at + self._batch_size]
            out[rows] = self._forward([texts[i] for i in rows])
        return out

    def embed_documents(self, texts: list[str]) -> FloatArray:
        """Embed texts in batches; returns an `(n, 384)` float32 array of unit vectors."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._encode(list(texts))

    def embed_query(self, text: str) -> FloatArray:
        """Embed one query; returns a `(384,)` float32 unit vector."""
        return self._encode([text]).reshape(-1)

    def embed_queries(self, texts: list[str]) -> FloatArray:
        """Embed queries (passes of `batch_size`, similar lengths); returns an `(n, 384)` array."""
        return self.embed_documents(texts)


def _export_in_child(bundle: Path) -> None:
    """Export the model with torch in a child process, keeping torch out of this one."""
    logger.warning(
        "exporting the embedding model to %s (once per install; `make install` does it)", bundle
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, our module, our path
        [sys.executable, "-m", "core.knowledge.onnx_export", "--out", str(bundle)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"exporting {LOCAL_MODEL_NAME} to {bundle} failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )


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
