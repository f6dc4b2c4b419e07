"""Token usage of a scripted reply, counted with `core.tokens` on o200k_base."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from core.tokens import count_chat_tokens, count_text_tokens, get_encoding

CHAT_ENCODING = "o200k_base"
"""The tokenizer the mock counts chat tokens with."""


def prompt_tokens(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]) -> int:
    """Count the prompt tokens of a chat request.

    Args:
        messages: The request's messages.
        tools: The request's tool definitions (may be empty).

    Returns:
        The prompt token count, as `core.tokens.count_chat_tokens` gives it.
    """
    return count_chat_tokens(messages, tools or None, get_encoding(CHAT_ENCODING))


def tool_call_tokens(calls: Sequence[tuple[str, str]]) -> int:
    """Count the completion tokens of tool calls given as (name, arguments JSON) pairs."""
    encoding = get_encoding(CHAT_ENCODING)
    return sum(
        count_text_tokens(name, encoding) + count_text_tokens(arguments, encoding)
        for name, arguments in calls
    )


def text_tokens(text: str) -> int:
    """Count the completion tokens of a text reply."""
    return count_text_tokens(text, get_encoding(CHAT_ENCODING))


def usage_object(prompt: int, completion: int) -> dict[str, Any]:
    """Return the OpenAI `usage` object for the given token counts."""
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    }


__all__ = ["CHAT_ENCODING", "prompt_tokens", "text_tokens", "tool_call_tokens", "usage_object"]
