"""A FAISS inner-product index of policy chunks, stored as plain files (no pickles).

Layout of `index_dir`:
    index.faiss    faiss `IndexFlatIP` over L2-normalised vectors (inner product = cosine)
    chunks.jsonl   one chunk per line, in vector order
    manifest.json  {"version": 1, "embedding_model", "dimension", "created_at",
                    "documents": {source: {"sha256", "chunk_ids"}},
                    "files": {name: sha256}}   # integrity check of the two data files
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np

from core.errors import StewardError
from core.knowledge.chunking import Chunk
from core.knowledge.embeddings import FloatArray, normalize_rows

if TYPE_CHECKING:
    from core.knowledge.embeddings import Embedder

INDEX_FILE = "index.faiss"
CHUNKS_FILE = "chunks.jsonl"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1


class KnowledgeIndexError(StewardError):
    """Base class for knowledge-index problems."""


class IndexNotFound(KnowledgeIndexError):
    """No index exists in the directory yet."""


class IndexMismatch(KnowledgeIndexError):
    """The index was built with a different embedding model or dimension."""


class IndexCorrupt(KnowledgeIndexError):
    """The index files are unreadable or inconsistent with each other."""


@dataclass(frozen=True, slots=True)
class DocumentEntry:
    """What the manifest records about one indexed document."""

    sha256: str
    chunk_ids: tuple[str, ...]


def _rebuild_hint(index_dir: Path) -> str:
    return f"run `steward ingest` to (re)build the knowledge index in {index_dir}"


class KnowledgeIndex:
    """Chunks plus their vectors in a FAISS `IndexFlatIP`; documents are stored contiguously."""

    def __init__(
        self, embedding_model: str, dimension: int, *, created_at: str | None = None
    ) -> None:
        if dimension <= 0:
            raise ValueError("dimension must be positive")
        self._embedding_model = embedding_model
        self._dimension = dimension
        self._created_at = created_at or datetime.now(UTC).isoformat()
        self._faiss: Any = faiss.IndexFlatIP(dimension)
        self._chunks: list[Chunk] = []
        self._documents: dict[str, DocumentEntry] = {}
        self._rows: dict[str, range] = {}

    # -- properties ---------------------------------------------------------------------

    @property
    def embedding_model(self) -> str:
        """Name of the embedding model the vectors came from."""
        return self._embedding_model

    @property
    def dimension(self) -> int:
        """Vector dimension."""
        return self._dimension

    @property
    def created_at(self) -> str:
        """ISO-8601 UTC time the index was built."""
        return self._created_at

    @property
    def documents(self) -> dict[str, DocumentEntry]:
        """Indexed documents by source (a copy)."""
        return dict(self._documents)

    @property
    def chunks(self) -> list[Chunk]:
        """All chunks in vector order (a copy)."""
        return list(self._chunks)

    def __len__(self) -> int:
        return len(self._chunks)

    def __contains__(self, source: object) -> bool:
        return source in self._documents

    # -- building -----------------------------------------------------------------------

    def add_document(
        self, source: str, sha256: str, chunks: Sequence[Chunk], vectors: FloatArray
    ) -> None:
        """Append one document's chunks and their vectors (one row per chunk).

        Raises:
            ValueError: If the document is already present, chunks belong to another
                source, a chunk id is taken, or the vectors have the wrong shape.
        """
        if source in self._documents:
            raise ValueError(f"document {source!r} is already in the index")
        if any(chunk.source != source for chunk in chunks):
            raise ValueError(f"all chunks must have source {source!r}")
        rows = normalize_rows(vectors, self._dimension)
        if rows.shape[0] != len(chunks):
            raise ValueError(f"{len(chunks)} chunks but {rows.shape[0]} vectors for {source!r}")
        ids = [chunk.id for chunk in chunks]
        taken = {c.id for c in self._chunks}
        clashes = sorted(set(ids) & taken) + sorted({i for i in ids if ids.count(i) > 1})
        if clashes:
            raise ValueError(f"duplicate chunk ids in {source!r}: {clashes}")
        start = len(self._chunks)
        if len(chunks):
            self._faiss.add(rows)
        self._chunks.extend(chunks)
        self._rows[source] = range(start, start + len(chunks))
        self._documents[source] = DocumentEntry(sha256, tuple(ids))

    def check_compatible(self, embedder: Embedder) -> None:
        """Raise `IndexMismatch` unless `embedder` has this index's model name and dimension."""
        if embedder.name != self._embedding_model or embedder.dim != self._dimension:
            raise IndexMismatch(
                f"the knowledge index was built with {self._embedding_model!r} "
                f"(dimension {self._dimension}) but the configured embedder is "
                f"{embedder.name!r} (dimension {embedder.dim}); re-run `steward ingest` "
                "with the current STEWARD_EMBEDDINGS setting"
            )

    # -- querying -----------------------------------------------------------------------

    def search(self, vector: FloatArray, k: int) -> list[tuple[Chunk, float]]:
        """Return up to `k` `(chunk, cosine score)` pairs, best first."""
        k = min(k, len(self._chunks))
        if k <= 0:
            return []
        query = normalize_rows(np.asarray(vector).reshape(1, -1), self._dimension)
        scores, ids = self._faiss.search(query, k)
        results: list[tuple[Chunk, float]] = []
        for row, score in zip(ids[0], scores[0], strict=True):
            if row >= 0:
                results.append((self._chunks[int(row)], max(-1.0, min(1.0, float(score)))))
        return results

    def vectors_for(self, source: str) -> FloatArray:
        """Return the stored `(n_chunks, dim)` vectors of `source`, in chunk order.

        Raises:
            KeyError: If `source` is not indexed.
        """
        rows = self._rows[source]
        if not rows:
            return np.zeros((0, self._dimension), dtype=np.float32)
        out = self._faiss.reconstruct_n(rows.start, len(rows))
        return np.ascontiguousarray(out, dtype=np.float32)

    def chunks_for(self, source: str) -> list[Chunk]:
        """Return the stored chunks of `source`, in order.

        Raises:
            KeyError: If `source` is not indexed.
        """
        rows = self._rows[source]
        return self._chunks[rows.start : rows.stop]

    # -- persistence --------------------------------------------------------------------

    def save(self, index_dir: Path) -> None:
        """Write the three index files atomically (temp file + `os.replace` each).

        The manifest is replaced last and records the other files' sha256, so a reader
        racing a save sees a consistency error rather than mismatched data.
        """
        index_dir = Path(index_dir)
        index_dir.mkdir(parents=True, exist_ok=True)
        index_bytes = faiss.serialize_index(self._faiss).tobytes()
        chunks_bytes = "".join(
            json.dumps(chunk.to_dict(), ensure_ascii=False) + "\n" for chunk in self._chunks
        ).encode("utf-8")
        manifest = {
            "version": MANIFEST_VERSION,
            "embedding_model": self._embedding_model,
            "dimension": self._dimension,
            "created_at": self._created_at,
            "documents": {
                source: {"sha256": entry.sha256, "chunk_ids": list(entry.chunk_ids)}
                for source, entry in self._documents.items()
            },
            "files": {
                INDEX_FILE: hashlib.sha256(index_bytes).hexdigest(),
                CHUNKS_FILE: hashlib.sha256(chunks_bytes).hexdigest(),
            },
        }
        manifest_bytes = (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode()
        _atomic_write(index_dir / INDEX_FILE, index_bytes)
        _atomic_write(index_dir / CHUNKS_FILE, chunks_bytes)
        _atomic_write(index_dir / MANIFEST_FILE, manifest_bytes)

    @classmethod
    def load(cls, index_dir: Path, *, embedder: Embedder | None = None) -> KnowledgeIndex:
        """Load an index written by `save`.

        Args:
            index_dir: Directory holding the index files.
            embedder: When given, the index must match its model name and dimension.

        Raises:
            IndexNotFound: If the directory has no index.
            IndexMismatch: If `embedder` differs from the model the index was built with.
            IndexCorrupt: If the files are unreadable or inconsistent.
        """
        index_dir = Path(index_dir)
        paths = {name: index_dir / name for name in (MANIFEST_FILE, INDEX_FILE, CHUNKS_FILE)}
        missing = [name for name, path in paths.items() if not path.is_file()]
        if missing:
            raise IndexNotFound(
                f"no knowledge index found ({', '.join(missing)} missing); "
                + _rebuild_hint(index_dir)
            )
        try:
            manifest = json.loads(paths[MANIFEST_FILE].read_text(encoding="utf-8"))
            index_bytes = paths[INDEX_FILE].read_bytes()
            chunks_bytes = paths[CHUNKS_FILE].read_bytes()
            if manifest.get("version") != MANIFEST_VERSION:
                raise IndexCorrupt(
                    f"unsupported manifest version {manifest.get('version')!r}; "
                    + _rebuild_hint(index_dir)
                )
            index = cls(
                str(manifest["embedding_model"]),
                int(manifest["dimension"]),
                created_at=str(manifest["created_at"]),
            )
            if embedder is not None:
                index.check_compatible(embedder)
            expected = manifest.get("files", {})
            actual = {
                INDEX_FILE: hashlib.sha256(index_bytes).hexdigest(),
                CHUNKS_FILE: hashlib.sha256(chunks_bytes).hexdigest(),
            }
            for name, digest in expected.items():
                if actual.get(name) != digest:
                    raise IndexCorrupt(
                        f"{name} does not match the manifest (a save in progress, or a "
                        "damaged index); " + _rebuild_hint(index_dir)
                    )
            index._restore(
                faiss.deserialize_index(np.frombuffer(index_bytes, dtype=np.uint8)),
                [
                    Chunk.from_dict(json.loads(line))
                    for line in chunks_bytes.decode("utf-8").splitlines()
                    if line.strip()
                ],
                {
                    str(source): DocumentEntry(
                        str(entry["sha256"]), tuple(str(i) for i in entry["chunk_ids"])
                    )
                    for source, entry in manifest["documents"].items()
                },
            )
        except KnowledgeIndexError:
            raise
        except Exception as exc:  # faiss raises RuntimeError, json ValueError, KeyError...
            raise IndexCorrupt(
                f"cannot read the knowledge index: {exc}; " + _rebuild_hint(index_dir)
            ) from exc
        return index

    def _restore(self, raw: Any, chunks: list[Chunk], documents: dict[str, DocumentEntry]) -> None:
        if int(raw.d) != self._dimension:
            raise IndexCorrupt(f"index.faiss has dimension {raw.d}, manifest {self._dimension}")
        if int(raw.ntotal) != len(chunks):
            raise IndexCorrupt(f"index.faiss has {raw.ntotal} vectors for {len(chunks)} chunks")
        rows: dict[str, range] = {}
        start = 0
        for source, entry in documents.items():
            stop = start + len(entry.chunk_ids)
            stored = tuple(c.id for c in chunks[start:stop] if c.source == source)
            if stored != entry.chunk_ids:
                raise IndexCorrupt(f"chunks.jsonl does not match the manifest for {source!r}")
            rows[source] = range(start, stop)
            start = stop
        if start != len(chunks):
            raise IndexCorrupt("chunks.jsonl has chunks of documents missing from the manifest")
        self._faiss = raw
        self._chunks = chunks
        self._documents = documents
        self._rows = rows


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


__all__ = [
    "DocumentEntry",
    "IndexCorrupt",
    "IndexMismatch",
    "IndexNotFound",
    "KnowledgeIndex",
    "KnowledgeIndexError",
]
