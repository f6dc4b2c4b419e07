"""Run DTOs: the request body (`RunCreate`) and the `Run` response.

A run body's known fields are validated strictly; fields this server does not know are
ignored and logged, as the LangGraph server does (a field a newer SDK adds must not break
every call); fields of the LangGraph API it does not implement are refused with the reason.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from core.errors import StewardError
from server.assistants_repo import ASSISTANT_ID, GRAPH_ID

log = logging.getLogger(__name__)

RunStatus = Literal["pending", "running", "success", "error", "timeout", "interrupted"]
MultitaskStrategy = Literal["reject", "enqueue", "interrupt", "rollback"]
Durability = Literal["sync", "async", "exit"]
"""LangGraph's checkpoint modes: every step before the next, in the background, at the end."""
CancelAction = Literal["interrupt", "rollback"]
StreamMode = Literal[
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "events",
    "custom",
    "debug",
    "tasks",
    "checkpoints",
]

ACTIVE_STATUSES: frozenset[str] = frozenset({"pending", "running"})
TERMINAL_STATUSES: frozenset[str] = frozenset({"success", "error", "timeout", "interrupted"})
SUPPORTED_STREAM_MODES: tuple[str, ...] = get_args(StreamMode)
UNSUPPORTED_STREAM_MODES: dict[str, str] = {
    "tools": "not served",
    "lifecycle": "not served",
}

RESERVED_CONFIGURABLE = frozenset({"thread_id", "user_id", "tenant_id", "role", "requester_id"})
"""Identity keys of `config.configurable`: the server sets them from the API key and the run.
A client value equal to the server's is ignored, any other value is refused (422)."""
CHECKPOINT_CONFIGURABLE = frozenset(
    {"checkpoint_id", "checkpoint_ns", "checkpoint_map", "thread_ts", "run_id"}
)
"""`configurable` keys LangGraph (or the budget) reads to pick a checkpoint or a run: refused
(422; `checkpoint` picks a checkpoint). So are keys starting with `__` (LangGraph's own).
Every other `configurable` key is passed to the graph unchanged, as the LangGraph server does;
the graph reads none of them."""
ALLOWED_CONFIG_KEYS = frozenset({"configurable", "tags", "metadata", "recursion_limit", "run_name"})


class RunValidationError(StewardError, ValueError):
    """The request body is not a run we can execute; `detail` says why (422)."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class CommandBody(BaseModel):
    """`command`: resume an interrupt, update state, or jump to a node."""

    model_config = ConfigDict(extra="forbid")

    resume: Any = None
    update: Any = None
    goto: str | list[str | dict[str, Any]] | dict[str, Any] | None = None


class CheckpointRef(BaseModel):
    """Where to start a run from: a checkpoint of the same thread."""

    model_config = ConfigDict(extra="forbid")

    checkpoint_id: str | None = None
    checkpoint_ns: str = ""
    thread_id: str | None = None
    checkpoint_map: dict[str, Any] | None = None


class RunCreate(BaseModel):
    """The body of `POST .../runs`, `.../runs/stream` and `.../runs/wait` (validated strictly)."""

    model_config = ConfigDict(extra="forbid")

    assistant_id: str = GRAPH_ID
    input: dict[str, Any] | list[Any] | None = None
    command: CommandBody | None = None
    config: dict[str, Any] | None = None
    context: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    stream_mode: list[StreamMode] = Field(default_factory=lambda: list[StreamMode](["values"]))
    stream_subgraphs: bool = False
    stream_resumable: bool = False
    multitask_strategy: MultitaskStrategy = "enqueue"
    if_not_exists: Literal["create", "reject"] = "reject"
    on_disconnect: Literal["cancel", "continue"] = "continue"
    on_completion: Literal["delete", "keep"] | None = None
    interrupt_before: Literal["*"] | list[str] | None = None
    interrupt_after: Literal["*"] | list[str] | None = None
    durability: Durability | None = None
    """How often the run checkpoints (None: `STEWARD_RUN_DURABILITY`)."""
    checkpoint: CheckpointRef | None = None
    checkpoint_id: str | None = None
    after_seconds: float | None = Field(default=None, ge=0, le=86_400)
    strict_resume: bool = False

    @property
    def is_resume(self) -> bool:
        """True when the run answers a pending interrupt."""
        return self.command is not None and self.command.resume is not None

    @property
    def start_checkpoint(self) -> CheckpointRef | None:
        """The checkpoint to start from, from `checkpoint` or `checkpoint_id`."""
        if self.checkpoint is not None and self.checkpoint.checkpoint_id:
            return self.checkpoint
        if self.checkpoint_id:
            return CheckpointRef(checkpoint_id=self.checkpoint_id)
        return None


def _detail(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "body"
        if err["type"] == "extra_forbidden":
            parts.append(f"{loc}: unknown field")
        else:
            parts.append(f"{loc}: {err['msg']}")
    return "invalid run: " + "; ".join(parts)


def parse_run_create(body: Any, *, stateless: bool) -> RunCreate:
    """Validate a run body; refuse what we cannot honour with a clear message.

    `None`s are dropped (the SDK sends them). Unknown fields, at the top and inside `command`
    and `checkpoint`, are ignored and logged. With both `input` and `command`, the command
    wins and the input is ignored, as the LangGraph server does (agent-chat-ui resumes with
    `{"input": {}, "command": {"resume": ...}}`). Fields we know but cannot honour fail.

    Args:
        body: the decoded JSON body.
        stateless: True for `/runs/...` (no thread in the path).

    Raises:
        RunValidationError: the body is invalid or asks for something unsupported.
    """
    if not isinstance(body, dict):
        raise RunValidationError("the request body must be a JSON object")
    data = {k: v for k, v in body.items() if v is not None}
    ignored = _drop_unknown(data, RunCreate, "")
    for key, model in (("command", CommandBody), ("checkpoint", CheckpointRef)):
        if isinstance(data.get(key), dict):
            data[key] = dict(data[key])
            ignored += _drop_unknown(data[key], model, f"{key}.")
    if ignored:
        log.info("run body: ignored fields this server does not know", extra={"fields": ignored})
    unsupported = {
        "webhook": "webhooks are not supported",
        "langsmith_tracer": "LangSmith tracing is not supported",
    }
    for key, why in unsupported.items():
        if key in data:
            raise RunValidationError(f"{key}: {why}")
    if data.pop("feedback_keys", None):
        raise RunValidationError("feedback_keys: LangSmith feedback is not supported")
    if "checkpoint_during" in data:  # deprecated: as langgraph-api, false means `exit`
        during = data.pop("checkpoint_during")
        if not isinstance(during, bool):
            raise RunValidationError("checkpoint_during: must be true or false")
        data.setdefault("durability", "async" if during else "exit")
    mode = data.get("stream_mode")
    if isinstance(mode, str):
        data["stream_mode"] = [mode]
    modes = data.get("stream_mode")
    if isinstance(modes, list):
        for m in modes:
            if isinstance(m, str) and m in UNSUPPORTED_STREAM_MODES:
                raise RunValidationError(
                    f"stream_mode: {m!r} is not supported ({UNSUPPORTED_STREAM_MODES[m]}); "
                    f"supported modes: {', '.join(SUPPORTED_STREAM_MODES)}"
                )
        if all(isinstance(m, str) for m in modes):  # else pydantic names the bad item
            data["stream_mode"] = list(dict.fromkeys(modes))
    if stateless:
        for key in ("multitask_strategy", "checkpoint", "checkpoint_id"):
            if key in data:
                raise RunValidationError(f"{key}: only applies to runs on a thread")
        command = data.get("command")
        if isinstance(command, dict) and command.get("resume") is not None:
            raise RunValidationError("command.resume: a stateless run has nothing to resume")
    elif "on_completion" in data:
        raise RunValidationError("on_completion: only applies to stateless runs (/runs/...)")
    try:
        run = RunCreate.model_validate(data)
    except ValidationError as exc:
        raise RunValidationError(_detail(exc)) from exc
    if run.input is not None and run.command is not None:
        run = run.model_copy(update={"input": None})  # the command wins
    if run.command is not None and all(
        v is None for v in (run.command.resume, run.command.update, run.command.goto)
    ):
        raise RunValidationError("command: needs resume, update or goto")
    if run.checkpoint is not None and run.checkpoint_id is not None:
        raise RunValidationError("send either checkpoint or checkpoint_id, not both")
    if not run.stream_mode:
        raise RunValidationError("stream_mode: at least one mode is required")
    return run


PUBLIC_KWARGS = frozenset(RunCreate.model_fields)
"""The `kwargs` keys a client sees: the run body's fields."""

_KNOWN_ELSEWHERE = frozenset({"webhook", "langsmith_tracer", "feedback_keys", "checkpoint_during"})
"""Run fields of the LangGraph API handled (refused or checked) before validation."""


def _drop_unknown(data: dict[str, Any], model: type[BaseModel], prefix: str) -> list[str]:
    """Remove the keys `model` does not declare from `data`; return them (with `prefix`)."""
    unknown = [k for k in data if k not in model.model_fields and k not in _KNOWN_ELSEWHERE]
    for key in unknown:
        del data[key]
    return [f"{prefix}{k}" for k in sorted(map(str, unknown))][:20]


class Run(BaseModel):
    """A run as the LangGraph SDK sees it (`langgraph_sdk.schema.Run`)."""

    run_id: str
    thread_id: str | None
    assistant_id: str
    created_at: datetime
    updated_at: datetime
    status: RunStatus
    metadata: dict[str, Any]
    kwargs: dict[str, Any]
    multitask_strategy: MultitaskStrategy
    attempt: int = 1

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Run:
        """Build the DTO from a `runs` row."""
        return cls(
            run_id=str(row["run_id"]),
            thread_id=str(row["thread_id"]) if row.get("thread_id") else None,
            assistant_id=row["assistant_id"],
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            status=row["status"],
            metadata=row.get("metadata") or {},
            kwargs=row.get("kwargs") or {},
            multitask_strategy=row["multitask_strategy"],
            attempt=row.get("attempt") or 1,
        )

    def public(self) -> dict[str, Any]:
        """The JSON body returned to clients.

        `kwargs` keeps what the client sent (the fields of `RunCreate`); what the server
        records beside it (who sent it, their role, the request and trace ids, the approval
        a resume is bound to) stays internal.
        """
        out = self.model_dump(mode="json")
        out["kwargs"] = {k: v for k, v in out["kwargs"].items() if k in PUBLIC_KWARGS}
        return out


__all__ = [
    "ACTIVE_STATUSES",
    "ASSISTANT_ID",
    "CHECKPOINT_CONFIGURABLE",
    "GRAPH_ID",
    "RESERVED_CONFIGURABLE",
    "SUPPORTED_STREAM_MODES",
    "TERMINAL_STATUSES",
    "CancelAction",
    "CheckpointRef",
    "CommandBody",
    "MultitaskStrategy",
    "Run",
    "RunCreate",
    "RunStatus",
    "RunValidationError",
    "parse_run_create",
]
