"""Incremental ingestion of policy documents into the knowledge index."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from core.errors import StewardError
from core.knowledge.chunking import Chunk, chunk_document
from core.knowledge.embeddings import Embedder, FloatArray, normalize_rows
from core.knowledge.index import IndexCorrupt, IndexNotFound, KnowledgeIndex

logger = logging.getLogger(__name__)

DOCUMENT_SUFFIXES = frozenset({".md", ".markdown", ".txt"})


class IngestError(StewardError, ValueError):
    """The given documents cannot be indexed together (e.g. clashing names)."""


@dataclass
class IngestReport:
    """What one `ingest` run did."""

    documents_added: int = 0
    documents_updated: int = 0
    documents_unchanged: int = 0
    documents_removed: int = 0
    documents_kept: int = 0
    """Documents of earlier ingests that are not among the given paths (kept unless replace)."""
    chunks_total: int = 0
    chunks_embedded: int = 0
    seconds: float = 0.0
    removed_sources: list[str] = field(default_factory=list)
    """Sources dropped from the index because they are no longer among the given paths."""
    skipped_files: list[str] = field(default_factory=list)
    """Files skipped with a warning (unreadable, not UTF-8, empty)."""
    rebuilt: bool = False
    """True when the embedding model or dimension changed, so everything was re-embedded."""

    def summary(self) -> str:
        """Return a one-paragraph human-readable summary."""
        lines = [
            f"{self.documents_added} added, {self.documents_updated} updated, "
            f"{self.documents_unchanged} unchanged, {self.documents_removed} removed, "
            f"{self.documents_kept} kept; "
            f"{self.chunks_total} chunks in the index, {self.chunks_embedded} embedded "
            f"in {self.seconds:.2f}s"
        ]
        if self.rebuilt:
            lines.append("embedding model changed: the whole index was rebuilt")
        if self.removed_sources:
            lines.append("removed: " + ", ".join(self.removed_sources))
        if self.skipped_files:
            lines.append("skipped: " + ", ".join(self.skipped_files))
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class _Document:
    source: str
    sha256: str
    chunks: list[Chunk]


def discover_documents(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """List `(source, file)` pairs for files and directories (recursive, sorted by source).

    Directories contribute `*.md`, `*.markdown` and `*.txt` files (hidden ones excluded),
    named relative to that directory; a file given directly is named by its file name.

    Raises:
        FileNotFoundError: If a path does not exist.
        IngestError: If two files get the same source name.
    """
    found: dict[str, Path] = {}
    for root in paths:
        root = Path(root)
        if root.is_dir():
            candidates = [
                (p.relative_to(root).as_posix(), p)
                for p in root.rglob("*")
                if p.is_file()
                and p.suffix.lower() in DOCUMENT_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(root).parts)
            ]
        elif root.is_file():
            candidates = [(root.name, root)]
        else:
            raise FileNotFoundError(f"no such file or directory: {root}")
        for source, path in candidates:
            other = found.setdefault(source, path)
            if other.resolve() != path.resolve():
                raise IngestError(f"two documents are both named {source!r}: {other} and {path}")
    return sorted(found.items())


def _read_document(source: str, path: Path, max_chars: int, overlap: int) -> _Document | None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        logger.warning("skipping %s: cannot read it (%s)", path, exc)
        return None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        logger.warning("skipping %s: not valid UTF-8 (%s)", path, exc.reason)
        return None
    if not text.strip():
        logger.warning("skipping %s: empty document", path)
        return None
    chunks = chunk_document(source, text, max_chars=max_chars, overlap=overlap)
    if not chunks:
        logger.warning("skipping %s: no text to index", path)
        return None
    return _Document(source, hashlib.sha256(data).hexdigest(), chunks)


def _load_previous(index_dir: Path) -> KnowledgeIndex | None:
    try:
        return KnowledgeIndex.load(index_dir)
    except IndexNotFound:
        return None
    except IndexCorrupt as exc:
        logger.warning("rebuilding the knowledge index from scratch: %s", exc)
        return None


def _vectors_reusable(previous: KnowledgeIndex, embedder: Embedder, report: IngestReport) -> bool:
    if previous.embedding_model == embedder.name and previous.dimension == embedder.dim:
        return True
    logger.info(
        "embedding model changed (%s/%d -> %s/%d): rebuilding the whole index",
        previous.embedding_model,
        previous.dimension,
        embedder.name,
        embedder.dim,
    )
    report.rebuilt = True
    return False


@contextlib.contextmanager
def _progress_bar(enabled: bool, total: int) -> Iterator[Progress | None]:
    if not enabled or total == 0:
        yield None
        return
    bar = Progress(
        TextColumn("embedding chunks"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
    )
    with bar:
        yield bar


def _embed(embedder: Embedder, texts: list[str], batch_size: int, progress: bool) -> FloatArray:
    batches: list[FloatArray] = []
    with _progress_bar(progress, len(texts)) as bar:
        task = bar.add_task("embed", total=len(texts)) if bar is not None else None
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            vectors = normalize_rows(embedder.embed_documents(batch), embedder.dim)
            if vectors.shape[0] != len(batch):
                raise RuntimeError(
                    f"embedder {embedder.name} returned {vectors.shape[0]} vectors "
                    f"for {len(batch)} texts"
                )
            batches.append(vectors)
            if bar is not None and task is not None:
                bar.advance(task, len(batch))
    if not batches:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return np.concatenate(batches)


def ingest(
    paths: Sequence[Path],
    index_dir: Path,
    embedder: Embedder,
    *,
    replace: bool = False,
    progress: bool = True,
    batch_size: int = 64,
    max_chars: int = 900,
    overlap: int = 120,
) -> IngestReport:
    """Add the documents under `paths` to the index in `index_dir`, or update them.

    A document is known by its source name (its path relative to the directory given, or
    the file name of a file given): a name already in the index has its chunks replaced, a
    new one is added. Unchanged documents (same sha256 of the file bytes, same chunks) reuse
    their stored vectors. Documents of earlier ingests that are not under `paths` stay, unless
    `replace`: then the index holds exactly the documents under `paths`. A different
    embedding model or dimension re-embeds everything (kept documents from their stored
    chunks). Unreadable, non-UTF-8 and empty files are skipped with a warning.

    Args:
        paths: Files and/or directories (searched recursively for .md/.markdown/.txt).
        index_dir: Where the index files live.
        embedder: Embedding model to use.
        replace: Drop every document that is not under `paths`.
        progress: Show a progress bar on stderr while embedding.
        batch_size: Chunks per embedding call.
        max_chars: Maximum chunk size in characters.
        overlap: Overlap between consecutive chunks of a section.

    Returns:
        Counts of what changed.

    Raises:
        FileNotFoundError: If a given path does not exist.
        IngestError: If two documents clash (same source name or same chunk ids).
    """
    if batch_size <= 0:
        raise ValueError("batch_size must be positive")
    started = time.perf_counter()
    report = IngestReport()
    index_dir = Path(index_dir)

    documents: list[_Document] = []
    for source, path in discover_documents(paths):
        doc = _read_document(source, path, max_chars, overlap)
        if doc is None:
            report.skipped_files.append(source)
        else:
            documents.append(doc)
    if not documents:
        logger.warning("no documents to index under %s", ", ".join(map(str, paths)))

    previous = _load_previous(index_dir)
    current = {doc.source for doc in documents}
    kept: list[_Document] = []
    if previous is not None and not replace:
        kept = [
            _Document(source, entry.sha256, previous.chunks_for(source))
            for source, entry in previous.documents.items()
            if source not in current
        ]
        report.documents_kept = len(kept)

    owner: dict[str, str] = {}
    kept_sources = {doc.source for doc in kept}
    for doc in [*kept, *documents]:
        for chunk in doc.chunks:
            other = owner.setdefault(chunk.id, doc.source)
            if other != doc.source:
                hint = (
                    f" ({other!r} is in the index already: the same files given from another"
                    " folder get other names; `steward ingest --replace PATH...` rebuilds the"
                    " index from exactly PATH)"
                    if other in kept_sources
                    else ""
                )
                raise IngestError(
                    f"{other!r} and {doc.source!r} share the file stem behind chunk id "
                    f"{chunk.id!r}; rename one of them so citations stay unambiguous{hint}"
                )

    if previous is not None and replace:
        report.removed_sources = sorted(set(previous.documents) - current)
        report.documents_removed = len(report.removed_sources)
        for source in report.removed_sources:
            logger.info("removing %s from the knowledge index", source)

    if previous is not None and not _vectors_reusable(previous, embedder, report):
        to_embed_kept, previous = kept, None
    else:
        to_embed_kept = []
    reused: dict[str, FloatArray] = {}
    to_embed: list[_Document] = list(to_embed_kept)
    if previous is not None:
        for doc in kept:
            reused[doc.source] = previous.vectors_for(doc.source)
    for doc in documents:
        if previous is not None and doc.source in previous:
            entry = previous.documents[doc.source]
            if entry.sha256 == doc.sha256 and previous.chunks_for(doc.source) == doc.chunks:
                reused[doc.source] = previous.vectors_for(doc.source)
                report.documents_unchanged += 1
                continue
            report.documents_updated += 1
        else:
            report.documents_added += 1
        to_embed.append(doc)

    texts = [chunk.embedding_text() for doc in to_embed for chunk in doc.chunks]
    vectors = _embed(embedder, texts, batch_size, progress)
    report.chunks_embedded = len(texts)
    offset = 0
    for doc in to_embed:
        reused[doc.source] = vectors[offset : offset + len(doc.chunks)]
        offset += len(doc.chunks)

    everything = sorted([*kept, *documents], key=lambda doc: doc.source)
    report.chunks_total = sum(len(doc.chunks) for doc in everything)
    changed = bool(to_embed or report.documents_removed)
    if previous is None or changed:
        index = KnowledgeIndex(embedder.name, embedder.dim)
        for doc in everything:
            index.add_document(doc.source, doc.sha256, doc.chunks, reused[doc.source])
        index.save(index_dir)
    report.seconds = time.perf_counter() - started
    return report


__all__ = ["DOCUMENT_SUFFIXES", "IngestError", "IngestReport", "discover_documents", "ingest"]
