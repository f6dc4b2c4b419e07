"""What a new run must pass before it is queued, and what of the request is stored.

The client's config is validated (identity keys are the server's), breakpoints must name
nodes, a spent budget answers 429 up front, and the request becomes the run's `kwargs`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from core.budget.budgets import Payer
from core.budget.ledger import PgUsageLedger
from core.errors import NotFound, TooManyRequests, Unprocessable
from core.identity import SERVER_SET_KEYS, Principal
from core.observability.logging import current_request_id
from core.observability.tracing import current_traceparent
from graph.runtime import Runtime
from server.assistants_repo import AssistantRow
from server.runs.models import (
    ALLOWED_CONFIG_KEYS,
    CHECKPOINT_CONFIGURABLE,
    RESERVED_CONFIGURABLE,
    RunCreate,
)

Graph = CompiledStateGraph[Any, Any, Any, Any]


def seconds_until_reset(scope: str, now: datetime | None = None) -> int:
    """When a spent budget scope frees up again: next UTC day or month; a thread never."""
    now = now or datetime.now(UTC)
    if scope == "user_day":
        reset = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    elif scope == "tenant_month":
        first = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        reset = (first + timedelta(days=32)).replace(day=1)
    else:
        return 86_400
    return max(1, int((reset - now).total_seconds()))


async def check_budget(runtime: Runtime, principal: Principal, thread_id: str | None) -> None:
    """Refuse a new run with 429 when one of the caller's budgets is already spent.

    The graph still reserves every call's estimate before calling the model (the guarantee);
    this makes the API answer 429 up front instead of a run that can only refuse.
    """
    ledger = runtime.deps.usage_ledger
    if not isinstance(ledger, PgUsageLedger):
        return
    payer = Payer(
        tenant_id=principal.tenant_id, user_id=principal.user_id, thread_id=thread_id, run_id=None
    )
    for scope in await ledger.spend(payer):
        remaining = scope.remaining_usd
        if remaining is not None and remaining <= 0:
            raise TooManyRequests(
                f"budget exceeded: the {scope.scope} budget of {scope.limit_usd} USD is spent",
                retry_after=seconds_until_reset(scope.scope),
            )


def thread_uuid(thread_id: str | uuid.UUID | None, body: RunCreate) -> uuid.UUID:
    """The thread id from the path (422 if it was to be created from a malformed one, else 404)."""
    try:
        return uuid.UUID(str(thread_id))
    except ValueError:
        if body.if_not_exists == "create":
            raise Unprocessable(f"thread_id must be a UUID, got {thread_id!r}") from None
        raise NotFound(f"thread {thread_id} not found") from None


MAX_TAGS = 64
"""Tags per run or assistant config: each one goes to every trace span of the run."""
MAX_TAG_CHARS = 200


def _check_config(
    config: dict[str, Any], recursion_limit: int, *, identity: dict[str, str] | None
) -> dict[str, Any]:
    """The checks a run's and an assistant's config share; returns the cleaned config.

    Args:
        config: the config to check (copied, not changed).
        recursion_limit: the server's cap.
        identity: the server's own identity values (a run's): a reserved key equal to its
            value is dropped, any other is refused. None (an assistant's config, shared by a
            tenant): any reserved key is refused.
    """
    config = dict(config)
    unknown = sorted(set(config) - ALLOWED_CONFIG_KEYS)
    if unknown:
        raise Unprocessable(
            f"config: unsupported key(s) {', '.join(unknown)}; allowed: "
            f"{', '.join(sorted(ALLOWED_CONFIG_KEYS))}"
        )
    if not isinstance(config.get("configurable") or {}, dict):
        raise Unprocessable("config.configurable must be an object")
    configurable = dict(config.get("configurable") or {})
    for key in RESERVED_CONFIGURABLE:
        if key not in configurable:
            continue
        if identity is None:
            raise Unprocessable(
                f"config.configurable.{key} is identity the server sets from each run's API "
                "key; an assistant cannot set it"
            )
        if str(configurable[key]) != identity[key]:
            raise Unprocessable(
                f"config.configurable.{key} is set by the server and cannot be chosen"
            )
        del configurable[key]
    for key in list(configurable):
        if key.startswith("__") or key in CHECKPOINT_CONFIGURABLE:
            raise Unprocessable(
                f"config.configurable.{key} is reserved (use `checkpoint` to pick one)"
            )
    limit = config.get("recursion_limit")
    if limit is not None and (
        not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= recursion_limit
    ):
        raise Unprocessable(
            f"config.recursion_limit must be an integer from 1 to {recursion_limit}"
        )
    if config.get("run_name") is not None and not isinstance(config["run_name"], str):
        raise Unprocessable("config.run_name must be a string")
    if config.get("metadata") is not None and not isinstance(config["metadata"], dict):
        raise Unprocessable("config.metadata must be an object")
    for key in sorted(SERVER_SET_KEYS & set(config.get("metadata") or {})):
        if identity is None or str(config["metadata"][key]) != identity[key]:
            raise Unprocessable(
                f"config.metadata.{key} is identity the server records from each run's API "
                "key and cannot be chosen"
            )
    tags = config.get("tags")
    if tags is not None and not (
        isinstance(tags, list)
        and len(tags) <= MAX_TAGS
        and all(isinstance(t, str) and len(t) <= MAX_TAG_CHARS for t in tags)
    ):
        raise Unprocessable(
            f"config.tags must be a list of at most {MAX_TAGS} strings of at most "
            f"{MAX_TAG_CHARS} characters"
        )
    if configurable:
        config["configurable"] = configurable
    else:
        config.pop("configurable", None)
    return config


def client_config(
    body: RunCreate, thread_id: uuid.UUID, principal: Principal, recursion_limit: int
) -> dict[str, Any]:
    """Validate the client's config; identity keys are the server's, never the client's."""
    own = {
        "thread_id": str(thread_id),
        "user_id": principal.user_id,
        "tenant_id": principal.tenant_id,
        "role": principal.role,
        "requester_id": principal.user_id,
    }
    return _check_config(dict(body.config or {}), recursion_limit, identity=own)


CONTEXT_IDENTITY = RESERVED_CONFIGURABLE | {"assistant_id", "graph_id", "run_id"}
"""Context keys an assistant may not set: the run context is identity the server sets."""


def check_assistant_config(
    config: Any, context: Any, recursion_limit: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate an assistant's config and context (create and update); return them cleaned.

    An assistant is shared by its tenant, so it may name no identity at all: no reserved
    `configurable` key (whatever its value) and no identity key in `context`.

    Raises:
        Unprocessable: not objects, an unsupported or reserved key, a bad value.
    """
    if config is not None and not isinstance(config, dict):
        raise Unprocessable("config must be an object")
    if context is not None and not isinstance(context, dict):
        raise Unprocessable("context must be an object")
    clean = _check_config(dict(config or {}), recursion_limit, identity=None)
    forged = sorted(CONTEXT_IDENTITY & set(context or {}))
    if forged:
        raise Unprocessable(
            f"context.{forged[0]} is identity the server sets from each run's API key; an "
            "assistant cannot set it"
        )
    return clean, dict(context or {})


def with_assistant(
    config: dict[str, Any], context: dict[str, Any] | None, assistant: AssistantRow
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A run's config and context over its assistant's: the run's own values win.

    `configurable` and `metadata` are merged key by key; `tags`, `recursion_limit` and
    `run_name` are the run's when it sets them, else the assistant's.
    """
    base = assistant["config"] or {}
    merged = {**base, **config}
    for key in ("configurable", "metadata"):
        both = {**(base.get(key) or {}), **(config.get(key) or {})}
        if both:
            merged[key] = both
    ctx = {**(assistant["context"] or {}), **(context or {})}
    return merged, (ctx or context)


def check_nodes(graph: Graph, body: RunCreate) -> None:
    """`interrupt_before` / `interrupt_after` name only the graph's nodes (else 422)."""
    nodes = set(graph.nodes) - {"__start__"}
    for field in ("interrupt_before", "interrupt_after"):
        value = getattr(body, field)
        if isinstance(value, list):
            unknown = sorted(set(value) - nodes)
            if unknown:
                raise Unprocessable(
                    f"{field}: unknown node(s) {', '.join(unknown)}; the graph's nodes are "
                    f"{', '.join(sorted(nodes))}"
                )


def state_config(thread_id: uuid.UUID, body: RunCreate) -> RunnableConfig:
    """The config that reads the checkpoint the run starts from."""
    configurable: dict[str, Any] = {"thread_id": str(thread_id)}
    start = body.start_checkpoint
    if start is not None and start.checkpoint_id:
        configurable["checkpoint_id"] = start.checkpoint_id
        configurable["checkpoint_ns"] = start.checkpoint_ns
    return RunnableConfig(configurable=configurable)


def run_kwargs(
    body: RunCreate,
    config: dict[str, Any],
    principal: Principal,
    stateless: bool,
    *,
    durability: str,
) -> dict[str, Any]:
    """The run's `kwargs` column: what the executor needs of the request, and who sent it."""
    start = body.start_checkpoint
    kwargs: dict[str, Any] = {
        "input": body.input,
        "command": body.command.model_dump(exclude_none=True) if body.command else None,
        "config": config,
        "context": body.context,
        "stream_mode": list(body.stream_mode),
        "stream_subgraphs": body.stream_subgraphs,
        "stream_resumable": body.stream_resumable,
        "interrupt_before": body.interrupt_before,
        "interrupt_after": body.interrupt_after,
        "checkpoint": (
            {"checkpoint_id": start.checkpoint_id, "checkpoint_ns": start.checkpoint_ns}
            if start is not None
            else None
        ),
        "on_disconnect": body.on_disconnect,
        "strict_resume": body.strict_resume,
        "durability": body.durability or durability,
        "user_id": principal.user_id,
        "role": principal.role,
        "request_id": current_request_id(),
        "traceparent": current_traceparent(),
    }
    if stateless:
        kwargs["temporary"] = True
        kwargs["on_completion"] = body.on_completion or "delete"
    return kwargs
