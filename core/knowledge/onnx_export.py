"""Export the bundled all-MiniLM-L6-v2 to ONNX, once per install, so serving needs no torch.

`make install` and the Dockerfile run `python -m core.knowledge.onnx_export`; the embedder
(`core.knowledge.embeddings.LocalEmbedder`) runs the same command in a child process when the
export is missing, so the serving process itself never imports torch (about 300 MiB of RSS,
and twice the CPU per query: torch spends it on small matrices across threads).

The export is exact: the ONNX graph is the model's own transformer traced by torch, pooling
(the mean over real tokens) and normalisation stay in numpy, and the vectors equal
sentence-transformers' to float32 rounding (tests/integration/test_local_embeddings.py), so
the FAISS index and the injection classifier trained on them keep working unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.knowledge.onnx_bundle import (
    FORMAT,
    INPUTS,
    LOCAL_MODEL_NAME,
    MANIFEST,
    ONNX_FILE,
    TOKENIZER_FILE,
    default_bundle_dir,
    is_current,
    source_digest,
    source_model_dir,
)


def _sentence_config(source: Path) -> tuple[int, str]:
    """The model's max sequence length and pooling, refusing what the embedder cannot do."""
    modules = json.loads((source / "modules.json").read_text(encoding="utf-8"))
    kinds = [m["type"].rsplit(".", 1)[-1] for m in modules]
    if kinds != ["Transformer", "Pooling", "Normalize"]:
        raise ValueError(f"{source}: modules {kinds}, expected Transformer, Pooling, Normalize")
    pooling = json.loads((source / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    modes = [k for k, v in pooling.items() if k.startswith("pooling_mode_") and v]
    if modes != ["pooling_mode_mean_tokens"]:
        raise ValueError(f"{source}: pooling {modes}, only mean pooling is supported")
    config = json.loads((source / "sentence_bert_config.json").read_text(encoding="utf-8"))
    return int(config["max_seq_length"]), "mean"


def export(bundle: Path, source: Path | None = None) -> Path:
    """Export the model into `bundle` (replacing a stale one) and return `bundle`.

    The files are written to a temporary sibling directory and renamed into place, so a
    reader sees the old bundle or the new one, never half of one. Exports of one bundle by
    several processes take turns (`exported`).
    """
    import torch
    import transformers
    from tokenizers import Tokenizer
    from transformers import AutoModel

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: never the network
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    source = source if source is not None else source_model_dir()
    max_length, pooling = _sentence_config(source)
    bundle.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{bundle.name}-", dir=bundle.parent))
    try:
        tokenizer = Tokenizer.from_file(str(source / TOKENIZER_FILE))
        tokenizer.enable_truncation(max_length=max_length)
        tokenizer.enable_padding()  # to the longest text of a batch
        tokenizer.save(str(work / TOKENIZER_FILE))

        # Eager attention traces to plain matrix products that ONNX Runtime fuses.
        transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        model = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()

        class _Hidden(torch.nn.Module):
            def __init__(self, inner: Any) -> None:
                super().__init__()
                self.inner = inner

            def forward(self, ids: Any, mask: Any, types: Any) -> Any:
                out = self.inner(input_ids=ids, attention_mask=mask, token_type_ids=types)
                return out.last_hidden_state

        sample = list(tokenizer.encode_batch(["an example", "a longer example text"]))
        tensors = tuple(
            torch.tensor([getattr(e, attr) for e in sample], dtype=torch.int64)
            for attr in ("ids", "attention_mask", "type_ids")
        )
        axes = {name: {0: "batch", 1: "tokens"} for name in (*INPUTS, "last_hidden_state")}
        # The tracer's warnings are about Python control flow on shapes that does not vary.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Hidden(model),
                tensors,
                str(work / ONNX_FILE),
                input_names=list(INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        manifest = {
            "format": FORMAT,
            "model": LOCAL_MODEL_NAME,
            "source_sha256": source_digest(source),
            "dim": int(model.config.hidden_size),
            "max_seq_length": max_length,
            "pooling": pooling,
            "normalize": True,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        os.chmod(work, 0o755)  # noqa: S103 - a read-only model others of the install read
        aside = Path(tempfile.mkdtemp(prefix=f".{bundle.name}-stale-", dir=bundle.parent))
        if bundle.exists():
            bundle.rename(aside / "old")
        work.rename(bundle)
        shutil.rmtree(aside, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return bundle


def main(argv: list[str] | None = None) -> int:
    """`python -m core.knowledge.onnx_export [--out DIR] [--force]`."""
    parser = argparse.ArgumentParser(
        prog="python -m core.knowledge.onnx_export",
        description=f"Export {LOCAL_MODEL_NAME} to ONNX for the torch-free embedder.",
    )
    parser.add_argument("--out", type=Path, default=default_bundle_dir(), help="bundle folder")
    parser.add_argument("--force", action="store_true", help="export even when up to date")
    args = parser.parse_args(argv)
    try:
        with exported(args.out, force=args.force) as fresh:
            print(f"exported: {args.out}" if fresh else f"already exported: {args.out}")
    except OSError as exc:
        print(f"cannot write the export: {exc}", file=sys.stderr)
        return 1
    return 0


@contextlib.contextmanager
def exported(bundle: Path, *, force: bool = False) -> Iterator[bool]:
    """Hold the bundle's export lock with the bundle current; yields True when exported now.

    Processes that find a bundle missing or stale at the same time (a fresh install's first
    replicas) wait for each other here, and the later ones find it current.
    """
    bundle.parent.mkdir(parents=True, exist_ok=True)
    with (bundle.parent / f".{bundle.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and is_current(bundle):
            yield False
            return
        print(f"exporting {LOCAL_MODEL_NAME} to ONNX in {bundle} ...", flush=True)
        export(bundle)
        yield True


if __name__ == "__main__":
    raise SystemExit(main())
