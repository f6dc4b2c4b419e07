"""Retries of model calls: one policy, and it respects the provider's `Retry-After`.

The `agent` node has a LangGraph `RetryPolicy` (`llm_retry_policy`); ChatOpenAI's own retries
are off (`max_retries=0`) so there is one retry policy. LangGraph's policy sleeps
`min(max_interval, initial_interval * backoff_factor ** (failures - 1))` plus up to 1 s of
jitter between attempts and never looks at HTTP headers, so on its own it retries a 429 with
`Retry-After: 20` after about a second and burns the next attempt on another 429.

So the node, before it re-raises a retryable provider error that carries `Retry-After` (or
OpenAI's `retry-after-ms`), waits the part of it that the policy's coming backoff does not
cover: the next attempt starts no earlier than `min(Retry-After, STEWARD_LLM_MAX_RETRY_AFTER_S)`
after the failure. After the last attempt it does not wait (the run fails at once).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

from langgraph.types import RetryPolicy

from core.errors import is_retryable

INITIAL_INTERVAL_S = 0.5
BACKOFF_FACTOR = 2.0
MAX_INTERVAL_S = 8.0


def llm_retry_policy(max_attempts: int) -> RetryPolicy:
    """Back off on provider faults (429, 5xx, timeouts); never on our own bugs."""
    return RetryPolicy(
        initial_interval=INITIAL_INTERVAL_S,
        backoff_factor=BACKOFF_FACTOR,
        max_interval=MAX_INTERVAL_S,
        max_attempts=max_attempts,
        jitter=True,
        retry_on=is_retryable,
    )


def policy_backoff(policy: RetryPolicy, failures: int) -> float:
    """The least LangGraph sleeps after the `failures`-th failed attempt (jitter only adds)."""
    return float(
        min(
            policy.max_interval,
            policy.initial_interval * policy.backoff_factor ** max(0, failures - 1),
        )
    )


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds a provider asks us to wait: `retry-after-ms`, else `Retry-After`.

    `Retry-After` may be delta-seconds or an HTTP date; anything unparseable, negative or not
    finite is ignored (None).
    """
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            ms = float(raw_ms)
        except ValueError:
            ms = math.nan
        if math.isfinite(ms) and ms >= 0:
            return ms / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def retry_after_wait(
    policy: RetryPolicy, *, failures: int, retry_after: float | None, cap_s: float
) -> float:
    """Extra seconds to wait before re-raising, on top of the policy's own backoff.

    Args:
        policy: the node's retry policy.
        failures: attempts failed so far, this one included (LangGraph's `node_attempt`).
        retry_after: the provider's `Retry-After` in seconds, if it sent one.
        cap_s: `STEWARD_LLM_MAX_RETRY_AFTER_S`; a longer `Retry-After` is cut to this.
    """
    if retry_after is None or failures >= policy.max_attempts:
        return 0.0
    wanted = min(retry_after, max(0.0, cap_s))
    return max(0.0, wanted - policy_backoff(policy, failures))


__all__ = [
    "llm_retry_policy",
    "parse_retry_after",
    "policy_backoff",
    "retry_after_wait",
]
