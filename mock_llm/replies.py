"""The scripted model's reply as a value: text or tool calls, with token usage.

`MockReply` renders itself as an OpenAI assistant message and `usage` object; the HTTP server
and the in-process demo model both read it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any, Literal

from mock_llm.usage import usage_object


@dataclass(frozen=True, slots=True)
class MockToolCall:
    """One tool call; `arguments` is the JSON string the model emitted (it may be invalid)."""

    id: str
    name: str
    arguments: str

    def to_openai(self) -> dict[str, Any]:
        """Return the call as it appears in an OpenAI assistant message."""
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class MockReply:
    """What the scripted model answers: text content or tool calls, plus token usage."""

    content: str | None
    tool_calls: tuple[MockToolCall, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def finish_reason(self) -> Literal["stop", "tool_calls"]:
        """`tool_calls` when the reply calls tools, else `stop`."""
        return "tool_calls" if self.tool_calls else "stop"

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens."""
        return self.prompt_tokens + self.completion_tokens

    def usage(self) -> dict[str, Any]:
        """Return the OpenAI `usage` object."""
        return usage_object(self.prompt_tokens, self.completion_tokens)

    def message(self) -> dict[str, Any]:
        """Return the OpenAI assistant message (`choices[0].message`)."""
        out: dict[str, Any] = {"role": "assistant", "content": self.content, "refusal": None}
        if self.tool_calls:
            out["tool_calls"] = [call.to_openai() for call in self.tool_calls]
        return out

    def with_malformed_arguments(self) -> MockReply:
        """Return a copy whose tool-call arguments are invalid JSON (see `malform_arguments`)."""
        calls = tuple(
            replace(call, arguments=malform_arguments(call.arguments)) for call in self.tool_calls
        )
        return replace(self, tool_calls=calls)


def malform_arguments(arguments: str) -> str:
    """Corrupt a JSON arguments string so that no JSON parser accepts it.

    The object's closing brace becomes a mismatched `]`, which both `json.loads` and
    langchain-core's `parse_partial_json` (used on streamed tool calls) reject, so the call
    lands in `AIMessage.invalid_tool_calls` whether or not the client streams.
    """
    stripped = arguments.rstrip()
    if stripped.endswith("}"):
        return stripped[:-1] + "]"
    return "{" + stripped + "]"


def dumps(value: Any) -> str:
    """Serialise tool-call arguments (or an error object) the way the scripted model writes JSON."""
    return json.dumps(value, ensure_ascii=False)


__all__ = ["MockReply", "MockToolCall", "dumps", "malform_arguments"]
