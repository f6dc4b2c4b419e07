"""The run's identity, passed to the nodes as LangGraph's runtime context (`context_schema`).

Callers invoke the graph with `context=RunContext(...)`: the service from the API key and the
`runs` row (a client's `context` body field is ignored), `steward chat` and the evals with
their own. Under `langgraph dev` (Studio), a development server without authentication,
langgraph_api builds the context from the run's `context` body field (or, without one, from
`config.configurable`), so there a client names its own identity; fields it leaves out fall
back to the least privileged value. Nodes read identity only from here, never from
`config["configurable"]` or from the state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langgraph.runtime import Runtime


@dataclass(frozen=True, kw_only=True, slots=True)
class RunContext:
    """Who a run acts for: user, tenant and role (None: not known, a safe default applies)."""

    user_id: str | None = None
    """The caller (on a resume: the person deciding the approval)."""
    tenant_id: str | None = None
    """The caller's tenant (budgets charge it; None: `core.budget.budgets.DEFAULT_TENANT`)."""
    role: str | None = None
    """The caller's role, which picks the tools it may use (None: `STEWARD_DEFAULT_ROLE`)."""
    requester_id: str | None = None
    """Who asked for what this run executes: a resume acts for the approval's requester
    (None: `user_id`)."""

    @property
    def requester(self) -> str | None:
        """Who a side effect of this run is recorded for (`requester_id`, else `user_id`)."""
        return self.requester_id or self.user_id


DEFAULT_CONTEXT = RunContext()
"""The context of a run invoked without one: no identity, every default."""


def context_of(runtime: Runtime[RunContext] | None) -> RunContext:
    """The run's context, or `DEFAULT_CONTEXT` when the run was invoked without one."""
    context = runtime.context if runtime is not None else None
    return context if isinstance(context, RunContext) else DEFAULT_CONTEXT


def thread_id_of(runtime: Runtime[RunContext] | None) -> str | None:
    """The thread the run checkpoints to (LangGraph's execution info; None: not persisted)."""
    info = runtime.execution_info if runtime is not None else None
    return str(info.thread_id) if info is not None and info.thread_id else None


def run_id_of(runtime: Runtime[RunContext] | None, config: Mapping[str, Any]) -> str | None:
    """The run's id: the service's (`metadata.run_id`), else LangGraph's invocation id.

    An id, not identity: it names the usage ledger's rows and the traces of one run.
    """
    metadata: Mapping[str, Any] = config.get("metadata") or {}
    run_id = metadata.get("run_id")
    if not run_id:
        info = runtime.execution_info if runtime is not None else None
        run_id = info.run_id if info is not None else config.get("run_id")
    return str(run_id) if run_id else None
