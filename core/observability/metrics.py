"""Prometheus metrics: one registry, the metric objects, and small recording helpers.

Everything is exposed by `render_metrics()` (the `/metrics` route). Label values are small,
closed sets (routes are templates, reasons are codes, models are configured names): never put
ids or user text in a label.

Who records what:
- the HTTP middleware (`server/observability.py`): `HTTP_REQUEST_SECONDS`;
- the run observer (`graph.observer`, with `llm_calls.py`): runs, nodes, LLM calls, tokens,
  cost, tool calls, input and tool guardrail blocks, approval requests and decisions;
- `observe_pool(pool)`: the checkpoint/database pool, read from `get_stats()` at scrape time;
- other code: `record_guardrail_block`, `set_approvals_pending` / `refresh_approvals_pending`,
  `record_approval_decision` (decision latency).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    exposition,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)

disable_created_metrics()  # type: ignore[no-untyped-call]  # no `*_created` twin series
REGISTRY = CollectorRegistry(auto_describe=True)
"""The service's registry (not prometheus_client's global one, so tests and imports of other
libraries cannot add or clash with series)."""
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_FAST = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_HTTP = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_LLM = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)
_RUN = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 60.0, 120.0, 300.0)
_HUMAN = (
    5.0,
    30.0,
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    4 * 3600.0,
    12 * 3600.0,
    86400.0,
    3 * 86400.0,
)

HTTP_REQUEST_SECONDS = Histogram(
    "steward_http_request_duration_seconds",
    "HTTP request latency (until the last body byte is sent) by route template.",
    ["method", "route", "status"],
    buckets=_HTTP,
    registry=REGISTRY,
)
HTTP_REQUESTS_IN_FLIGHT = Gauge(
    "steward_http_requests_in_flight",
    "HTTP requests being served.",
    registry=REGISTRY,
)
RUNS = Counter(
    "steward_runs",
    "Graph runs by outcome (success, refused, interrupted, error, cancelled; checkpointed: a"
    " pass that stopped to save its checkpoint before a side effect, continued by the next).",
    ["outcome"],
    registry=REGISTRY,
)
RUN_SECONDS = Histogram(
    "steward_run_duration_seconds",
    "Wall time of one graph run (one invocation).",
    ["outcome"],
    buckets=_RUN,
    registry=REGISTRY,
)
NODE_SECONDS = Histogram(
    "steward_node_duration_seconds",
    "Latency of one graph node execution (status ok, interrupted or error).",
    ["node", "status"],
    buckets=_FAST,
    registry=REGISTRY,
)
LLM_CALLS = Counter(
    "steward_llm_calls",
    "Chat model calls by model and status (ok or error).",
    ["model", "status"],
    registry=REGISTRY,
)
LLM_SECONDS = Histogram(
    "steward_llm_call_duration_seconds",
    "Chat model call latency by model.",
    ["model"],
    buckets=_LLM,
    registry=REGISTRY,
)
LLM_ERRORS = Counter(
    "steward_llm_errors",
    "Failed chat model calls by model and exception type.",
    ["model", "error_type"],
    registry=REGISTRY,
)
LLM_TOKENS = Counter(
    "steward_llm_tokens",
    "Tokens by model and kind (input, output, cached_input).",
    ["model", "kind"],
    registry=REGISTRY,
)
LLM_COST_USD = Counter(
    "steward_llm_cost_usd",
    "Estimated LLM spend in USD by model (list prices, pricing.py).",
    ["model"],
    registry=REGISTRY,
)
LLM_UNPRICED_CALLS = Counter(
    "steward_llm_unpriced_calls",
    "Chat model calls whose model has no known price.",
    ["model"],
    registry=REGISTRY,
)
TOOL_CALLS = Counter(
    "steward_tool_calls",
    "Tool calls requested by the model, by tool and outcome (executed, failed, denied, rejected).",
    ["tool", "outcome"],
    registry=REGISTRY,
)
RETRIEVAL_HITS = Histogram(
    "steward_retrieval_hits",
    "Policy chunks returned per retrieval.",
    buckets=(0, 1, 2, 4, 8, 16),
    registry=REGISTRY,
)
GUARDRAIL_BLOCKS = Counter(
    "steward_guardrail_blocks",
    "Inputs, tool calls or outputs blocked, by stage and reason.",
    ["stage", "reason"],
    registry=REGISTRY,
)
APPROVAL_REQUESTS = Counter(
    "steward_approval_requests",
    "Tool calls held for a person's decision, by tool.",
    ["tool"],
    registry=REGISTRY,
)
APPROVAL_DECISIONS = Counter(
    "steward_approval_decisions",
    "Reviewer decisions applied by the graph, by decision.",
    ["decision"],
    registry=REGISTRY,
)
APPROVALS_PENDING = Gauge(
    "steward_approvals_pending",
    "Approvals waiting for a decision (whole deployment, from the approvals table; "
    "aggregate replicas with max, not sum).",
    registry=REGISTRY,
)
APPROVAL_DECISION_SECONDS = Histogram(
    "steward_approval_decision_seconds",
    "Time from an approval request to its decision, by decision.",
    ["decision"],
    buckets=_HUMAN,
    registry=REGISTRY,
)

# ---------------------------------------------------------------------------- helpers for others


def bounded_label(value: str, known: Collection[str], *, other: str = "other") -> str:
    """`value` when it is one of the `known` label values, else `other`.

    For values a caller does not control (tool names chosen by the model, codes added later):
    an unbounded label would create series at will.
    """
    return value if value in known else other


def record_guardrail_block(reason: str, *, stage: str = "input") -> None:
    """Count one blocked input, tool call or output.

    The run callback handler already counts input refusals (the `refusal` reason code set by
    input_filter) and tool calls denied by guard_tools; call this only for blocks that do not
    surface in the graph state (e.g. a server-side filter, an output filter).

    Args:
        reason: a short, fixed reason code (`prompt_injection`, `pii`, ...), never free text.
        stage: `input`, `tool` or `output`.
    """
    GUARDRAIL_BLOCKS.labels(stage=stage, reason=reason).inc()


def set_approvals_pending(count: int) -> None:
    """Set the number of approvals waiting for a decision (deployment-wide)."""
    APPROVALS_PENDING.set(count)


def record_approval_decision(decision: str, seconds: float) -> None:
    """Record how long a person took to decide (`approve`, `edit` or `reject`)."""
    APPROVAL_DECISION_SECONDS.labels(decision=decision).observe(max(seconds, 0.0))


APPROVALS_PENDING_SQL = "SELECT count(*) AS n FROM approvals WHERE status = 'pending'"


async def refresh_approvals_pending(pool: AsyncConnectionPool[Any]) -> int | None:
    """Set `steward_approvals_pending` from the approvals table; None if it does not exist.

    Args:
        pool: the service's pool (dict rows or tuple rows both work).
    """
    import psycopg

    try:
        async with pool.connection() as conn:
            row: Any = await (await conn.execute(APPROVALS_PENDING_SQL)).fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    count = int(row["n"] if isinstance(row, dict) else row[0])
    APPROVALS_PENDING.set(count)
    return count


async def approvals_pending_loop(
    pool: AsyncConnectionPool[Any], *, interval_s: float = 15.0
) -> None:
    """Refresh the pending-approvals gauge forever (run as a task; cancel it on shutdown)."""
    while True:
        try:
            await refresh_approvals_pending(pool)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001  # a gauge must never stop the server
            log.warning(
                "could not count pending approvals", extra={"error_type": type(exc).__name__}
            )
        await asyncio.sleep(interval_s)


# ------------------------------------------------------------------------------ pool statistics


class _StatsSource(Protocol):
    name: str

    def get_stats(self) -> dict[str, int]: ...


_POOL_GAUGES = {
    "pool_min": "Configured minimum connections.",
    "pool_max": "Configured maximum connections.",
    "pool_size": "Connections currently managed by the pool (in use, idle or being prepared).",
    "pool_available": "Idle connections ready to be handed out.",
    "requests_waiting": "Callers currently waiting for a connection.",
}
_POOL_COUNTERS = {
    "requests_num": ("requests", 1.0, "Connection requests."),
    "requests_queued": ("requests_queued", 1.0, "Requests that had to wait for a connection."),
    "requests_errors": ("requests_errors", 1.0, "Requests that failed (timeout, pool closed)."),
    "requests_wait_ms": ("requests_wait_seconds", 0.001, "Total time spent waiting."),
    "usage_ms": ("usage_seconds", 0.001, "Total time connections were lent out."),
    "returns_bad": ("returns_bad", 1.0, "Connections returned in a bad state."),
    "connections_num": ("connections", 1.0, "Connection attempts to the server."),
    "connections_errors": ("connections_errors", 1.0, "Failed connection attempts."),
    "connections_lost": ("connections_lost", 1.0, "Connections found broken by the check."),
}


class PoolStatsCollector(Collector):
    """Reads `psycopg_pool` statistics at scrape time (`get_stats()`, cumulative counters)."""

    def __init__(self) -> None:
        self._pools: dict[int, _StatsSource] = {}
        self._lock = threading.Lock()

    def add(self, pool: _StatsSource) -> Callable[[], None]:
        """Start exporting `pool`; returns a function that stops it."""
        with self._lock:
            self._pools[id(pool)] = pool

        def remove() -> None:
            with self._lock:
                self._pools.pop(id(pool), None)

        return remove

    def describe(self) -> Iterable[Metric]:
        """Nothing to pre-describe: families depend on which pools are registered."""
        return []

    def collect(self) -> Iterable[Metric]:
        """Yield one gauge or counter family per statistic, labelled by pool name."""
        with self._lock:
            pools = list(self._pools.values())
        gauges = {
            key: GaugeMetricFamily(f"steward_db_pool_{key}", doc, labels=["pool"])
            for key, doc in _POOL_GAUGES.items()
        }
        counters = {
            key: CounterMetricFamily(f"steward_db_pool_{name}", doc, labels=["pool"])
            for key, (name, _, doc) in _POOL_COUNTERS.items()
        }
        for pool in pools:
            stats = pool.get_stats()
            for key, gauge in gauges.items():
                gauge.add_metric([pool.name], float(stats.get(key, 0)))
            for key, counter in counters.items():
                scale = _POOL_COUNTERS[key][1]
                counter.add_metric([pool.name], float(stats.get(key, 0)) * scale)
        if pools:
            yield from gauges.values()
            yield from counters.values()


POOL_STATS = PoolStatsCollector()
REGISTRY.register(POOL_STATS)


def observe_pool(pool: _StatsSource) -> Callable[[], None]:
    """Export a psycopg pool's usage (the checkpoint pool) on `/metrics`.

    Args:
        pool: an open `AsyncConnectionPool` (anything with `name` and `get_stats()`).

    Returns:
        A function that stops exporting it (call it when the pool closes).
    """
    return POOL_STATS.add(pool)


def render_metrics(accept: str | None = None) -> tuple[bytes, str]:
    """Render the registry in the format the scraper asked for.

    Args:
        accept: the request's Accept header (OpenMetrics when asked, else Prometheus text).

    Returns:
        The body and its content type.
    """
    encoder, content_type = exposition.choose_encoder(accept or "")
    return encoder(REGISTRY), content_type


__all__ = [
    "APPROVALS_PENDING",
    "APPROVAL_DECISIONS",
    "APPROVAL_DECISION_SECONDS",
    "APPROVAL_REQUESTS",
    "GUARDRAIL_BLOCKS",
    "HTTP_REQUESTS_IN_FLIGHT",
    "HTTP_REQUEST_SECONDS",
    "LLM_CALLS",
    "LLM_COST_USD",
    "LLM_ERRORS",
    "LLM_SECONDS",
    "LLM_TOKENS",
    "LLM_UNPRICED_CALLS",
    "NODE_SECONDS",
    "REGISTRY",
    "RETRIEVAL_HITS",
    "RUNS",
    "RUN_SECONDS",
    "TOOL_CALLS",
    "PoolStatsCollector",
    "approvals_pending_loop",
    "bounded_label",
    "observe_pool",
    "record_approval_decision",
    "record_guardrail_block",
    "refresh_approvals_pending",
    "render_metrics",
    "set_approvals_pending",
]
