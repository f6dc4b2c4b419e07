"""Injected faults: what a queued fault is, how the control API validates one, and its queue.

A fault applies to the next `count` chat requests, first in first out: an HTTP error status,
a delay, a truncated body or stream, or malformed tool-call arguments.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

FaultKind = Literal["status", "timeout", "truncate", "malformed_tool_args"]
_FAULT_KINDS: frozenset[str] = frozenset({"status", "timeout", "truncate", "malformed_tool_args"})


@dataclass(slots=True, kw_only=True)
class Fault:
    """A queued fault; it applies to the next `count` chat requests."""

    kind: FaultKind
    count: int = 1
    status: int = 500
    retry_after: float | None = None
    delay_s: float = 5.0

    @classmethod
    def parse(cls, raw: Any) -> Fault:
        """Validate one fault from the control API.

        Raises:
            ValueError: If the fault is malformed.
        """
        if not isinstance(raw, Mapping):
            raise ValueError("each fault must be a JSON object")
        kind = raw.get("kind")
        if kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {sorted(_FAULT_KINDS)}")
        count = raw.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError("count must be a positive integer")
        fault = cls(kind=kind, count=count)
        if kind == "status":
            status = raw.get("status", 500)
            if not isinstance(status, int) or not 400 <= status <= 599:
                raise ValueError("status must be an HTTP error status (e.g. 429, 500, 503)")
            fault.status = status
            retry_after = raw.get("retry_after", 1 if status == 429 else None)
            if retry_after is not None and (
                not isinstance(retry_after, int | float) or retry_after < 0
            ):
                raise ValueError("retry_after must be a non-negative number of seconds")
            fault.retry_after = retry_after
        if kind == "timeout":
            delay = raw.get("delay_s", 5.0)
            if not isinstance(delay, int | float) or delay < 0:
                raise ValueError("delay_s must be a non-negative number of seconds")
            fault.delay_s = float(delay)
        return fault


def take_fault(
    faults: deque[Fault], counts: Counter[str], *, tool_calls: bool | None = None
) -> Fault | None:
    """Consume one use of the head fault, if it applies, and count it in `counts`.

    `malformed_tool_args` applies only to replies with tool calls, so it is taken only when
    `tool_calls` is True; the other kinds are taken when `tool_calls` is None.

    Args:
        faults: The queue of faults, head first.
        counts: The server's counters (`faults_served`, `faults.<kind>`).
        tool_calls: None before the reply is known, else whether the reply calls tools.

    Returns:
        The fault taken, or None.
    """
    if not faults:
        return None
    head = faults[0]
    wants_reply = head.kind == "malformed_tool_args"
    if wants_reply != (tool_calls is not None) or (wants_reply and not tool_calls):
        return None
    head.count -= 1
    if head.count <= 0:
        faults.popleft()
    counts["faults_served"] += 1
    counts[f"faults.{head.kind}"] += 1
    return head


__all__ = ["Fault", "FaultKind", "take_fault"]
