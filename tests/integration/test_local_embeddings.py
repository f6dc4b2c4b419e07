"""The real all-MiniLM-L6-v2 model from the installed package, fully offline."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.knowledge import FaissRetriever, KnowledgeIndex, LocalEmbedder, ingest
from core.knowledge.chunking import TITLE_SEPARATOR as SEP

pytestmark = pytest.mark.integration

DOCS = {
    "data-security.md": (
        "# Data Security\n\n"
        "## Storage\n\n"
        "All customer databases and backups are protected with AES-256 disk encryption; "
        "keys live in a hardware security module and are rotated every ninety days.\n\n"
        "## Transport\n\nConnections to our services require TLS 1.2 or newer.\n"
    ),
    "refund-policy.md": (
        "# Refund Policy\n\n"
        "Customers may request a refund within 30 days of delivery. Refunds go back to the "
        "original payment method within five business days.\n"
    ),
    "shipping.md": (
        "# Shipping\n\n"
        "Orders leave our warehouse within two business days and the courier sends a "
        "tracking link by email.\n"
    ),
}


@pytest.fixture(scope="module")
def embedder() -> Iterator[LocalEmbedder]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        yield LocalEmbedder()


def test_local_embedder_is_offline_384d_and_normalised(embedder: LocalEmbedder) -> None:
    started = time.perf_counter()
    docs = embedder.embed_documents(["Refunds take five days.", "Parcels ship fast.", "x"])
    print(f"model load + 3 embeddings: {time.perf_counter() - started:.2f}s")
    query = embedder.embed_query("how long do refunds take")

    assert embedder.loaded
    assert embedder.dim == 384
    assert docs.shape == (3, 384) and docs.dtype == np.float32
    assert query.shape == (384,) and query.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    assert abs(float(np.linalg.norm(query)) - 1.0) < 1e-5
    assert float(docs[0] @ query) > float(docs[1] @ query)


async def test_encryption_query_retrieves_the_security_doc(
    embedder: LocalEmbedder, tmp_path: Path
) -> None:
    corpus = tmp_path / "policies"
    corpus.mkdir()
    for name, text in DOCS.items():
        (corpus / name).write_text(text, encoding="utf-8")

    report = ingest([corpus], tmp_path / "index", embedder, progress=False)
    assert report.documents_added == 3

    retriever = FaissRetriever(KnowledgeIndex.load(tmp_path / "index", embedder=embedder), embedder)
    results = await retriever.search("Is my data encrypted at rest?", k=3)

    assert results[0]["id"] == "data-security#0"
    assert results[0]["title"] == f"Data Security{SEP}Storage"
    assert results[0]["score"] > results[1]["score"]
