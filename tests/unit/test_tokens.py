"""Offline tiktoken loading and chat token counting (core.tokens)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from core.tokens import count_chat_tokens, get_encoding

REPO_ROOT = Path(__file__).resolve().parents[2]

# Any download attempt fails: tiktoken fetches http(s) URLs with `requests`, others with blobfile.
OFFLINE_PROBE = """
import sys
sys.modules["requests"] = None
sys.modules["blobfile"] = None
from core.tokens import get_encoding
print(len(get_encoding("o200k_base").encode("hello world")))
print(get_encoding("cl100k_base").name)
"""


def test_encodings_load_offline_into_tiktoken_cache(tmp_path: Path) -> None:
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_PROBE],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["2", "cl100k_base"]
    o200k = tmp_path / "fb374d419588a4632f3f557e76b4b70aebbca790"
    cl100k = tmp_path / "9b5ad71b2ce5302211f9c61530b329a4922fc6a4"
    assert hashlib.sha256(o200k.read_bytes()).hexdigest() == (
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
    )
    assert cl100k.is_file()


def test_hello_world_is_two_o200k_tokens() -> None:
    encoding = get_encoding()
    assert encoding.name == "o200k_base"
    assert len(encoding.encode("hello world")) == 2
    assert get_encoding("o200k_base") is encoding


def test_count_chat_tokens_follows_openai_rules() -> None:
    encoding = get_encoding()
    one = [{"role": "user", "content": "hello world"}]
    # 3 per message + "user" (1) + "hello world" (2) + 3 reply priming
    assert count_chat_tokens(one, None, encoding) == 9
    named = [{"role": "user", "content": "hello world", "name": "amy"}]
    assert count_chat_tokens(named, None, encoding) == 9 + 1 + len(encoding.encode("amy"))
    parts = [{"role": "user", "content": [{"type": "text", "text": "hello world"}]}]
    assert count_chat_tokens(parts, None, encoding) == 9


def test_count_chat_tokens_grows_with_content_tools_and_calls() -> None:
    encoding = get_encoding()
    short = [{"role": "user", "content": "Where is my order?"}]
    longer = [{"role": "user", "content": "Where is my order? " * 20}]
    base = count_chat_tokens(short, None, encoding)
    assert base > 0
    assert count_chat_tokens(longer, None, encoding) > base
    tools = [{"type": "function", "function": {"name": "get_order", "parameters": {}}}]
    assert count_chat_tokens(short, tools, encoding) > base
    call = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "get_order", "arguments": '{"order_id": "LS-10001"}'},
            }
        ],
    }
    with_call = count_chat_tokens([*short, call], None, encoding)
    empty_assistant = count_chat_tokens(
        [*short, {"role": "assistant", "content": None}], None, encoding
    )
    assert with_call > empty_assistant > base
