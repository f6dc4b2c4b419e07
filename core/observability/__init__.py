"""Observability: structured logs, Prometheus metrics, OpenTelemetry and LangSmith traces.

Start-up: `configure_logging(settings)`, `configure_tracing()`. What a run of the workflow
reports (per node, model and tool call) is `graph.observer`, built on these.
"""

from core.observability.logging import (
    bind_log_context,
    configure_logging,
    current_request_id,
    get_logger,
    log_context,
    unbind_log_context,
)
from core.observability.metrics import (
    observe_pool,
    record_approval_decision,
    record_guardrail_block,
    refresh_approvals_pending,
    render_metrics,
    set_approvals_pending,
)
from core.observability.tracing import (
    configure_tracing,
    current_traceparent,
    flush_tracing,
    shutdown_tracing,
)

__all__ = [
    "bind_log_context",
    "configure_logging",
    "configure_tracing",
    "current_request_id",
    "current_traceparent",
    "flush_tracing",
    "get_logger",
    "log_context",
    "observe_pool",
    "record_approval_decision",
    "record_guardrail_block",
    "refresh_approvals_pending",
    "render_metrics",
    "set_approvals_pending",
    "shutdown_tracing",
    "unbind_log_context",
]
