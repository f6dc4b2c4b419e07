"""Percentiles shared by the benches (nearest rank: the p99 of fewer than 100 values is the max)."""

from __future__ import annotations

import math


def percentile(values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of `values` (any order); None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(pct / 100 * len(ordered))) - 1]


def p50_p99_ms(samples_ms: list[float]) -> dict[str, float]:
    """`p50_ms`, `p99_ms` and `n` of latency samples in milliseconds (at least one)."""
    p50, p99 = percentile(samples_ms, 50), percentile(samples_ms, 99)
    assert p50 is not None and p99 is not None, "no samples"
    return {"p50_ms": p50, "p99_ms": p99, "n": len(samples_ms)}
