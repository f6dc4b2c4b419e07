"""The provider's `Retry-After` sets the backoff of model-call retries, bounded by a cap.

ChatOpenAI talks over real HTTP to the mock provider, which answers 429 with `Retry-After`.
Durations are measured with `time.monotonic()` around the whole turn: the lower bounds hold
on any machine; the only upper bound is a generous one that proves the cap applies.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any

import pytest

from graph.builder import DURABILITY, make_graph
from graph.checkpointer import make_checkpointer
from graph.retry import llm_retry_policy, policy_backoff
from graph.runtime import Runtime
from tests.run_context import context_for

pytestmark = pytest.mark.integration

QUESTION = "How long is the return window?"


async def timed_turn(graph: Any) -> tuple[float, dict[str, Any]]:
    config = {"configurable": {"thread_id": str(uuid.uuid4()), "user_id": "alice"}}
    started = time.monotonic()
    out: dict[str, Any] = await graph.ainvoke(
        {"messages": [{"role": "user", "content": QUESTION}]},
        config,
        context=context_for(config),
        durability=DURABILITY,
    )
    return time.monotonic() - started, out


async def test_a_429_is_retried_no_sooner_than_its_retry_after(
    runtime: Runtime, mock_llm: Any, mock_llm_clean: None
) -> None:
    retry_after = 4.0
    # Without Retry-After the policy would retry after 0.5-1.5 s: far below 4 s.
    assert policy_backoff(llm_retry_policy(3), 1) + 1.0 < retry_after
    await mock_llm.add_faults(
        [{"kind": "status", "status": 429, "count": 1, "retry_after": retry_after}]
    )
    took, out = await timed_turn(runtime.graph)
    assert out["response"]["sources"], out
    assert len(await mock_llm.requests()) == 2
    assert took >= retry_after, f"retried {took:.2f}s after a 429 asking for {retry_after}s"


async def test_a_huge_retry_after_is_capped(
    runtime: Runtime, mock_llm: Any, mock_llm_clean: None
) -> None:
    cap = 2.0
    settings = runtime.deps.settings.model_copy(update={"llm_max_retry_after_s": cap})
    deps = dataclasses.replace(runtime.deps, settings=settings)
    graph = make_graph(make_checkpointer(runtime.pool), deps=deps)
    await mock_llm.add_faults([{"kind": "status", "status": 429, "count": 1, "retry_after": 3600}])
    took, out = await timed_turn(graph)
    assert out["response"]["sources"], out
    assert len(await mock_llm.requests()) == 2
    assert took >= cap, f"retried after {took:.2f}s, before the capped {cap}s"
    assert took < 120, f"a 3600 s Retry-After was not capped at {cap}s (took {took:.0f}s)"
