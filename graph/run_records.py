"""What the run observer keeps about a run, a node execution and a model call in flight."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span


@dataclass(eq=False)
class RunCall:
    """One graph invocation."""

    name: str
    started: float
    span: Span | None
    kind: str
    interrupted: bool = False
    refusal: str | None = None
    llm_calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    actions: list[tuple[str, str]] = field(default_factory=list)
    response: Mapping[str, Any] | None = None


@dataclass(eq=False)
class NodeCall:
    """One node execution (one attempt), with what its input state held."""

    name: str
    run: RunCall
    started: float
    start_ns: int
    span: Span | None
    actions_in: int
    plan_in: list[Mapping[str, Any]]


@dataclass(eq=False)
class LlmCall:
    """One chat-model call."""

    model: str
    run: RunCall | None
    started: float
    span: Span | None


__all__ = ["LlmCall", "NodeCall", "RunCall"]
