"""Pre-flight token estimates with tiktoken (offline encodings from core.tokens).

The prompt is counted the way OpenAI bills a chat-completions request (messages in OpenAI
format plus the tool definitions); the output is reserved at the call's `max_tokens` cap, so a
reservation covers the worst case of one call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import tiktoken
from langchain_core.messages import BaseMessage, convert_to_openai_messages

from core.budget.prices import cost_usd
from core.settings import Settings
from core.tokens import count_chat_tokens, count_text_tokens, get_encoding


@dataclass(frozen=True, slots=True)
class CallEstimate:
    """What one model call may cost at most."""

    model: str
    input_tokens: int
    max_output_tokens: int
    usd: Decimal
    """Price of `input_tokens` plus `max_output_tokens`: the amount reserved."""


def encoding_name(model: str) -> str:
    """`cl100k_base` for GPT-4 / GPT-3.5 models, `o200k_base` for everything newer."""
    base = model.split("/")[-1]
    if base.startswith(("gpt-4-", "gpt-3.5")) or base == "gpt-4":
        return "cl100k_base"
    return "o200k_base"


async def encoding_for(model: str) -> tiktoken.Encoding:
    """The model's encoding; the first load reads files, so it runs in a worker thread."""
    return await asyncio.to_thread(get_encoding, encoding_name(model))


def prompt_tokens(
    messages: Sequence[BaseMessage], tools: Sequence[Mapping[str, Any]], encoding: tiktoken.Encoding
) -> int:
    """Estimated prompt tokens of a request with these messages and tool definitions."""
    openai_messages = convert_to_openai_messages(list(messages))
    return count_chat_tokens(openai_messages, list(tools) or None, encoding)


def estimate_call(
    model: str,
    messages: Sequence[BaseMessage],
    tools: Sequence[Mapping[str, Any]],
    *,
    max_output_tokens: int,
    encoding: tiktoken.Encoding,
    settings: Settings,
) -> CallEstimate:
    """Estimate a call: counted prompt, output at its cap, priced for `model`."""
    tokens = prompt_tokens(messages, tools, encoding)
    usd = cost_usd(model, settings, input_tokens=tokens, output_tokens=max_output_tokens)
    return CallEstimate(
        model=model, input_tokens=tokens, max_output_tokens=max_output_tokens, usd=usd
    )


def output_tokens_of(message: BaseMessage, encoding: tiktoken.Encoding) -> int:
    """Count a reply's tokens (text and tool-call arguments) when the provider reports none."""
    total = count_text_tokens(message.text, encoding)
    for call in getattr(message, "tool_calls", None) or ():
        total += count_text_tokens(str(call.get("name") or ""), encoding)
        total += count_text_tokens(str(call.get("args") or ""), encoding)
    return total


__all__ = [
    "CallEstimate",
    "encoding_for",
    "encoding_name",
    "estimate_call",
    "output_tokens_of",
    "prompt_tokens",
]
