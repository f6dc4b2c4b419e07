"""The mock provider's configuration (the CLI options) and its mutable per-app state."""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from mock_llm.faults import Fault, take_fault


@dataclass(frozen=True, slots=True, kw_only=True)
class MockConfig:
    """Process-level behaviour of the mock provider (the CLI options)."""

    latency_ms: int = 0
    """Sleep before answering every model request (chat and embeddings)."""
    error_rate: float = 0.0
    """Fraction of model requests answered 500 or 429, drawn from a RNG seeded with `seed`."""
    stream_delay_ms: int = 0
    """Pause between streamed chunks."""
    seed: int = 0
    max_logged_requests: int = 1000
    models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small")
    """Ids listed by `GET /v1/models` (any model name is accepted and echoed)."""


@dataclass(slots=True)
class MockState:
    """Mutable server state; touched only from the event loop, so it needs no locks."""

    config: MockConfig
    rng: random.Random
    faults: deque[Fault] = field(default_factory=deque)
    requests: deque[dict[str, Any]] = field(default_factory=deque)
    counts: Counter[str] = field(default_factory=Counter)

    def take_fault(self, *, tool_calls: bool | None = None) -> Fault | None:
        """Consume one use of the head fault, if it applies.

        `malformed_tool_args` applies only to replies with tool calls, so it is taken only when
        `tool_calls` is True; the other kinds are taken when `tool_calls` is None.
        """
        return take_fault(self.faults, self.counts, tool_calls=tool_calls)


__all__ = ["MockConfig", "MockState"]
