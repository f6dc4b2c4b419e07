from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import threading
from pathlib import Path
from unittest.mock import patch

import numpy as np
import numpy.typing as npt
import pytest

from core.knowledge import (
    FaissRetriever,
    IndexCorrupt,
    IndexMismatch,
    IndexNotFound,
    IngestError,
    KnowledgeIndex,
    OpenAIEmbedder,
    ingest,
    load_retriever,
    make_embedder,
)
from core.knowledge.chunking import TITLE_SEPARATOR as SEP
from core.knowledge.embeddings import LOCAL_MODEL_NAME, LocalEmbedder
from core.settings import Settings


class HashingEmbedder:
    """Deterministic bag-of-words feature hashing; counts what it embeds."""

    def __init__(self, dim: int = 256, name: str = "fake-hashing") -> None:
        self.name = name
        self.dim = dim
        self.documents_embedded = 0
        self.calls = 0
        self.query_threads: list[int] = []
        self.query_passes: list[int] = []

    def _vector(self, text: str) -> npt.NDArray[np.float32]:
        vec = np.zeros(self.dim, dtype=np.float32)
        for token in re.findall(r"[a-z0-9]+", text.lower()):
            digest = hashlib.blake2b(token.encode(), digest_size=8).digest()
            vec[int.from_bytes(digest, "little") % self.dim] += 1.0
        norm = float(np.linalg.norm(vec))
        return vec / norm if norm else vec

    def embed_documents(self, texts: list[str]) -> npt.NDArray[np.float32]:
        self.calls += 1
        self.documents_embedded += len(texts)
        return np.stack([self._vector(t) for t in texts]).astype(np.float32)

    def embed_query(self, text: str) -> npt.NDArray[np.float32]:
        return np.asarray(self.embed_queries([text])[0], dtype=np.float32)

    def embed_queries(self, texts: list[str]) -> npt.NDArray[np.float32]:
        self.query_threads.append(threading.get_ident())
        self.query_passes.append(len(texts))
        return np.stack([self._vector(t) for t in texts]).astype(np.float32)


DOCS = {
    "refund-policy.md": (
        "# Refund Policy\n\nRefunds are issued to the original payment method within 30 days.\n\n"
        "## Exceptions\n\nGift cards and digital downloads are never refunded.\n"
    ),
    "shipping.md": (
        "# Shipping\n\nOrders leave the warehouse within two business days.\n\n"
        "## Tracking\n\nThe courier emails a tracking number once the parcel is dispatched.\n"
    ),
    "security/data-protection.md": (
        "# Data Protection\n\nCustomer records are encrypted at rest with AES-256 and keys "
        "rotate every ninety days.\n"
    ),
}


def write_corpus(root: Path, docs: dict[str, str] = DOCS) -> Path:
    for name, text in docs.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "docs")


@pytest.fixture
def index_dir(tmp_path: Path) -> Path:
    return tmp_path / "index"


def read_chunks(index_dir: Path) -> list[dict[str, str]]:
    lines = (index_dir / "chunks.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def test_ingest_writes_index_chunks_and_manifest(corpus: Path, index_dir: Path) -> None:
    embedder = HashingEmbedder()
    report = ingest([corpus], index_dir, embedder, progress=False)

    assert sorted(p.name for p in index_dir.iterdir()) == [
        "chunks.jsonl",
        "index.faiss",
        "manifest.json",
    ]
    manifest = json.loads((index_dir / "manifest.json").read_text())
    assert manifest["version"] == 1
    assert manifest["embedding_model"] == "fake-hashing"
    assert manifest["dimension"] == 256
    assert manifest["created_at"]
    assert set(manifest["documents"]) == set(DOCS)
    data = (corpus / "shipping.md").read_bytes()
    assert manifest["documents"]["shipping.md"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["documents"]["shipping.md"]["chunk_ids"] == ["shipping#0", "shipping#1"]

    chunks = read_chunks(index_dir)
    assert [c["id"] for c in chunks] == [
        i for doc in manifest["documents"].values() for i in doc["chunk_ids"]
    ]
    assert {"id", "source", "title", "text"} <= set(chunks[0])
    assert report.documents_added == 3
    assert report.chunks_total == len(chunks) == report.chunks_embedded == 5
    assert embedder.documents_embedded == 5
    assert len(KnowledgeIndex.load(index_dir, embedder=embedder)) == 5


def test_reingest_unchanged_embeds_nothing(corpus: Path, index_dir: Path) -> None:
    embedder = HashingEmbedder()
    ingest([corpus], index_dir, embedder, progress=False)
    before = (index_dir / "manifest.json").read_bytes()
    embedder.documents_embedded = embedder.calls = 0

    report = ingest([corpus], index_dir, embedder, progress=True)

    assert (embedder.calls, embedder.documents_embedded, report.chunks_embedded) == (0, 0, 0)
    assert report.documents_unchanged == 3
    assert report.documents_added == report.documents_updated == report.documents_removed == 0
    assert report.chunks_total == 5
    assert (index_dir / "manifest.json").read_bytes() == before


def test_changing_one_document_reembeds_only_its_chunks(corpus: Path, index_dir: Path) -> None:
    embedder = HashingEmbedder()
    ingest([corpus], index_dir, embedder, progress=False)
    old = KnowledgeIndex.load(index_dir)
    embedder.documents_embedded = 0

    (corpus / "shipping.md").write_text(
        "# Shipping\n\nOrders ship the same day.\n\n## Tracking\n\nNo tracking.\n\n"
        "## Returns\n\nReturn labels are free.\n",
        encoding="utf-8",
    )
    report = ingest([corpus], index_dir, embedder, progress=True, batch_size=2)

    assert report.documents_updated == 1
    assert report.documents_unchanged == 2
    assert report.chunks_embedded == embedder.documents_embedded == 3
    new = KnowledgeIndex.load(index_dir)
    assert new.documents["shipping.md"].chunk_ids == ("shipping#0", "shipping#1", "shipping#2")
    np.testing.assert_array_equal(
        new.vectors_for("refund-policy.md"), old.vectors_for("refund-policy.md")
    )
    assert any(c.text == "Return labels are free." for c in new.chunks)


def test_deleting_a_document_removes_its_chunks_with_replace(corpus: Path, index_dir: Path) -> None:
    embedder = HashingEmbedder()
    ingest([corpus], index_dir, embedder, progress=False)
    (corpus / "refund-policy.md").unlink()

    report = ingest([corpus], index_dir, embedder, replace=True, progress=False)

    assert report.documents_removed == 1
    assert report.removed_sources == ["refund-policy.md"]
    assert "removed: refund-policy.md" in report.summary()
    assert report.chunks_embedded == 0
    assert not any(c["source"] == "refund-policy.md" for c in read_chunks(index_dir))
    index = KnowledgeIndex.load(index_dir)
    assert len(index) == report.chunks_total == 3
    assert "refund-policy.md" not in index.documents


def test_a_second_ingest_adds_and_keeps_the_first(
    corpus: Path, index_dir: Path, tmp_path: Path
) -> None:
    embedder = HashingEmbedder()
    ingest([corpus], index_dir, embedder, progress=False)
    before = KnowledgeIndex.load(index_dir)
    mine = write_corpus(tmp_path / "mine", {"warranty.md": "# Warranty\n\nTwo years.\n"})
    embedder.documents_embedded = 0

    report = ingest([mine], index_dir, embedder, progress=False)

    assert (report.documents_added, report.documents_kept, report.documents_removed) == (1, 3, 0)
    assert report.chunks_embedded == embedder.documents_embedded == 1  # only the new one
    index = KnowledgeIndex.load(index_dir)
    assert set(index.documents) == {*DOCS, "warranty.md"}
    assert report.chunks_total == len(index) == 6
    np.testing.assert_array_equal(
        index.vectors_for("shipping.md"), before.vectors_for("shipping.md")
    )

    # Same source name again: its chunks are replaced, the rest stays.
    (mine / "warranty.md").write_text("# Warranty\n\nThree years.\n", encoding="utf-8")
    report = ingest([mine], index_dir, embedder, progress=False)
    assert (report.documents_updated, report.documents_kept) == (1, 3)
    index = KnowledgeIndex.load(index_dir)
    assert [c.text for c in index.chunks_for("warranty.md")] == ["Three years."]
    assert set(index.documents) == {*DOCS, "warranty.md"}

    # --replace makes the index exactly what it is given.
    report = ingest([mine], index_dir, embedder, replace=True, progress=False)
    assert report.removed_sources == sorted(DOCS)
    assert set(KnowledgeIndex.load(index_dir).documents) == {"warranty.md"}


def test_kept_documents_are_reembedded_when_the_model_changes(
    corpus: Path, index_dir: Path, tmp_path: Path
) -> None:
    ingest([corpus], index_dir, HashingEmbedder(dim=256), progress=False)
    mine = write_corpus(tmp_path / "mine", {"warranty.md": "# Warranty\n\nTwo years.\n"})
    other = HashingEmbedder(dim=64, name="other-model")

    report = ingest([mine], index_dir, other, progress=False)

    assert report.rebuilt and report.documents_kept == 3
    assert report.chunks_embedded == other.documents_embedded == 6
    index = KnowledgeIndex.load(index_dir, embedder=other)
    assert set(index.documents) == {*DOCS, "warranty.md"}


def test_a_new_document_may_not_clash_with_a_kept_one(
    corpus: Path, index_dir: Path, tmp_path: Path
) -> None:
    ingest([corpus], index_dir, HashingEmbedder(), progress=False)
    before = (index_dir / "manifest.json").read_bytes()
    mine = write_corpus(tmp_path / "mine", {"shipping.txt": "Another shipping text.\n"})
    with pytest.raises(IngestError, match="shipping"):
        ingest([mine], index_dir, HashingEmbedder(), progress=False)
    assert (index_dir / "manifest.json").read_bytes() == before


async def test_search_returns_best_matching_chunk_off_the_loop(
    corpus: Path, index_dir: Path
) -> None:
    embedder = HashingEmbedder()
    ingest([corpus], index_dir, embedder, progress=False)
    retriever = FaissRetriever(KnowledgeIndex.load(index_dir, embedder=embedder), embedder)

    results = await retriever.search("when does the courier email a tracking number", k=3)

    assert len(results) == 3
    assert results[0]["id"] == "shipping#1"
    assert results[0]["title"] == f"Shipping{SEP}Tracking"
    assert results[0]["source"] == "shipping.md"
    assert all(isinstance(r["score"], float) for r in results)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    assert embedder.query_threads and embedder.query_threads[0] != threading.get_ident()

    top = await retriever.search("are records encrypted at rest", k=1)
    assert [r["source"] for r in top] == ["security/data-protection.md"]
    assert await retriever.search("anything", k=0) == []
    assert len(await retriever.search("refund", k=50)) == 5


def test_missing_index_says_run_ingest(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFound, match="steward ingest"):
        KnowledgeIndex.load(tmp_path / "nowhere")


def test_mismatched_embedder_is_refused(corpus: Path, index_dir: Path) -> None:
    ingest([corpus], index_dir, HashingEmbedder(dim=256), progress=False)
    with pytest.raises(IndexMismatch, match="fake-hashing"):
        KnowledgeIndex.load(index_dir, embedder=HashingEmbedder(dim=128))
    with pytest.raises(IndexMismatch):
        KnowledgeIndex.load(index_dir, embedder=HashingEmbedder(dim=256, name="other-model"))


def test_model_change_rebuilds_everything(corpus: Path, index_dir: Path) -> None:
    ingest([corpus], index_dir, HashingEmbedder(dim=256), progress=False)
    other = HashingEmbedder(dim=64, name="other-model")

    report = ingest([corpus], index_dir, other, progress=False)

    assert report.rebuilt
    assert report.chunks_embedded == other.documents_embedded == 5
    index = KnowledgeIndex.load(index_dir, embedder=other)
    assert (index.embedding_model, index.dimension) == ("other-model", 64)


def test_non_utf8_and_empty_files_are_skipped(
    corpus: Path, index_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (corpus / "latin1.md").write_bytes(
        "# Politique\n\nRemboursé sous 30 jours.\n".encode("latin-1")
    )
    (corpus / "blank.txt").write_text("\n   \n", encoding="utf-8")
    (corpus / "image.png").write_bytes(b"\x89PNG\r\n")
    with caplog.at_level(logging.WARNING, logger="core.knowledge"):
        report = ingest([corpus], index_dir, HashingEmbedder(), progress=False)

    assert report.documents_added == 3
    assert sorted(report.skipped_files) == ["blank.txt", "latin1.md"]
    assert "latin1.md" in caplog.text and "UTF-8" in caplog.text
    assert "blank.txt" in caplog.text
    assert "latin1.md" not in KnowledgeIndex.load(index_dir).documents


def test_single_files_and_clashing_stems(tmp_path: Path, index_dir: Path) -> None:
    write_corpus(tmp_path / "a", {"faq.md": "# FAQ\n\nAlpha.\n"})
    write_corpus(tmp_path / "b", {"faq.txt": "Beta.\n"})
    with pytest.raises(IngestError, match="faq"):
        ingest([tmp_path / "a", tmp_path / "b"], index_dir, HashingEmbedder(), progress=False)
    assert not index_dir.exists()

    report = ingest([tmp_path / "b" / "faq.txt"], index_dir, HashingEmbedder(), progress=False)
    assert report.documents_added == 1
    with pytest.raises(FileNotFoundError):
        ingest([tmp_path / "missing"], index_dir, HashingEmbedder(), progress=False)


def test_corrupt_index_is_detected_and_rebuilt(corpus: Path, index_dir: Path) -> None:
    embedder = HashingEmbedder()
    ingest([corpus], index_dir, embedder, progress=False)
    with (index_dir / "chunks.jsonl").open("a", encoding="utf-8") as f:
        f.write('{"id": "x#0", "source": "x.md", "title": "x", "text": "x"}\n')
    with pytest.raises(IndexCorrupt, match="steward ingest"):
        KnowledgeIndex.load(index_dir)

    report = ingest([corpus], index_dir, embedder, progress=False)
    assert report.chunks_embedded == 5
    assert len(KnowledgeIndex.load(index_dir)) == 5


async def test_chunks_below_the_floor_are_never_returned(corpus: Path, index_dir: Path) -> None:
    embedder = HashingEmbedder()
    ingest([corpus], index_dir, embedder, progress=False)
    index = KnowledgeIndex.load(index_dir, embedder=embedder)
    question = "when does the courier email a tracking number"
    everything = await FaissRetriever(index, embedder).search(question, k=5)
    floor = (everything[0]["score"] + everything[1]["score"]) / 2

    floored = FaissRetriever(index, embedder, min_score=floor)

    assert await floored.search(question, k=5) == everything[:1]
    assert floored.search_sync(question, k=5) == everything[:1]
    assert await FaissRetriever(index, embedder, min_score=1.0).search(question, k=5) == []


def test_load_retriever_takes_the_floor_from_settings(corpus: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", embeddings="local", retrieval_min_score=0.5)
    with patch("core.knowledge.retriever.make_embedder", return_value=HashingEmbedder()):
        ingest([corpus], settings.index_dir, HashingEmbedder(), progress=False)
        assert load_retriever(settings).min_score == 0.5
    assert Settings().retrieval_min_score == 0.33  # bench/retrieval_floor.py calibrated it


def test_load_retriever_and_make_embedder_use_settings(corpus: Path, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", embeddings="local")
    with pytest.raises(IndexNotFound):
        load_retriever(settings)
    ingest([corpus], settings.index_dir, HashingEmbedder(), progress=False)
    with pytest.raises(IndexMismatch, match=LOCAL_MODEL_NAME):
        load_retriever(settings)  # built with the fake, configured for the local model

    local = make_embedder(settings)
    assert isinstance(local, LocalEmbedder)
    assert (local.name, local.dim, local.loaded) == (LOCAL_MODEL_NAME, 384, False)

    with pytest.raises(ValueError, match="OPENAI_API_KEY"):
        make_embedder(Settings(embeddings="openai", openai_api_key=None, openai_base_url=None))
    remote = make_embedder(Settings(embeddings="openai", openai_base_url="http://127.0.0.1:9/v1"))
    assert isinstance(remote, OpenAIEmbedder)
    assert (remote.name, remote.dim) == ("openai:text-embedding-3-small", 1536)


async def test_concurrent_searches_share_embedding_passes_and_get_their_own_results(
    corpus: Path, index_dir: Path
) -> None:
    embedder = HashingEmbedder()
    ingest([corpus], index_dir, embedder, progress=False)
    retriever = FaissRetriever(KnowledgeIndex.load(index_dir, embedder=embedder), embedder)
    questions = [f"{topic} question {i}" for i in range(8) for topic in ("refund", "shipping")]
    alone = [await retriever.search(q, k=2) for q in questions]
    embedder.query_passes.clear()

    together = await asyncio.gather(*(retriever.search(q, k=2) for q in questions))

    assert together == alone
    assert sum(embedder.query_passes) == len(questions)
    assert len(embedder.query_passes) < len(questions)
