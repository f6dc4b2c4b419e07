"""Service settings, read once from the environment (names are part of the contract)."""

from __future__ import annotations

import os
import re
import types
import typing
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from core.errors import ConfigError


class Settings(BaseSettings):
    """Everything an operator can set; see the README's configuration table."""

    # The prefix keeps generic variables (HOME, ENV, MODEL) from matching fields by name;
    # every field still reads exactly the variable named in its alias.
    model_config = SettingsConfigDict(
        env_file=None,
        extra="ignore",
        populate_by_name=True,
        env_prefix="STEWARD_",
        use_attribute_docstrings=True,
    )

    env: Literal["development", "production"] = Field(
        default="development", validation_alias="STEWARD_ENV"
    )
    """`production` refuses to start without a real LLM provider."""
    home: Path = Field(default=Path(".steward"), validation_alias="STEWARD_HOME")
    """Data directory: embedded Postgres, knowledge index, keys."""
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    """Postgres URL; unset means an embedded Postgres under `home`."""
    db_pool_min: int = Field(default=2, ge=1, validation_alias="STEWARD_DB_POOL_MIN")
    """Connections each replica keeps open."""
    db_pool_max: int = Field(default=20, ge=1, validation_alias="STEWARD_DB_POOL_MAX")
    """Most connections per replica (replicas x max must fit the server's `max_connections`).
    Runs and requests share the pool and hold a connection per statement or transaction, not
    per run: 50 run slots with a 1 s model and 200 clients ran on 20 without a wait error."""
    db_pool_timeout_s: float = Field(
        default=2.0, gt=0, validation_alias="STEWARD_DB_POOL_TIMEOUT_S"
    )
    """How long a request waits for a database connection before its 503 (runs retry)."""
    db_startup_timeout_s: float = Field(
        default=120.0, gt=0, validation_alias="STEWARD_DB_STARTUP_TIMEOUT_S"
    )
    """How long start-up waits out an unreachable database before the process exits."""
    db_prepare_threshold: int | None = Field(
        default=0, ge=0, validation_alias="STEWARD_DB_PREPARE_THRESHOLD"
    )
    """0 prepares every statement (psycopg's `prepare_threshold`); empty (or `none`) disables
    prepared statements, as PgBouncer in transaction mode needs."""

    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    """Key of any OpenAI-compatible provider; unset (with no base URL) means the offline demo
    model."""
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    """Base URL of an OpenAI-compatible provider (e.g. the mock provider)."""
    model: str = Field(default="gpt-4o-mini", validation_alias="STEWARD_MODEL")
    """The strong chat model."""
    routine_model: str = Field(default="gpt-4o-mini", validation_alias="STEWARD_ROUTINE_MODEL")
    """The cheap chat model that short, routine turns are routed to."""
    llm_timeout_s: float = Field(default=30.0, gt=0, validation_alias="STEWARD_LLM_TIMEOUT_S")
    """Provider timeout of one model call."""
    llm_max_attempts: int = Field(default=3, ge=1, validation_alias="STEWARD_LLM_MAX_ATTEMPTS")
    """Attempts of one model call (retries on provider errors)."""
    llm_max_tokens: int = Field(default=1024, ge=1, validation_alias="STEWARD_LLM_MAX_TOKENS")
    """Output cap of every model call (also what a call's budget reservation assumes)."""

    embeddings: Literal["local", "openai"] = Field(
        default="local", validation_alias="STEWARD_EMBEDDINGS"
    )
    """`local` (all-MiniLM-L6-v2, offline) or `openai` embeddings for the knowledge index."""
    openai_embedding_model: str = Field(
        default="text-embedding-3-small", validation_alias="STEWARD_OPENAI_EMBEDDING_MODEL"
    )
    """Embedding model when STEWARD_EMBEDDINGS is `openai`."""
    retrieval_k: int = Field(default=4, ge=1, validation_alias="STEWARD_RETRIEVAL_K")
    """Policy chunks retrieved per question."""
    retrieval_min_score: float = Field(
        default=0.33, ge=-1, le=1, validation_alias="STEWARD_RETRIEVAL_MIN_SCORE"
    )
    """Relevance floor: chunks whose cosine similarity to the question is below it are neither
    shown to the model nor citable; a turn left with no chunk and no tool result gets the
    honest "I don't know" with STEWARD_SUPPORT_CONTACT. Calibrated for the local embeddings on
    the eval datasets (`python bench/retrieval_floor.py`); re-run that after changing the
    embeddings or the corpus (OpenAI embeddings score on another scale)."""
    support_contact: str = Field(
        default="our support team at support@larkspursupply.example or by live chat, "
        "6:00 a.m.-6:00 p.m. Pacific on weekdays and 8:00 a.m.-4:00 p.m. on weekends",
        min_length=1,
        validation_alias="STEWARD_SUPPORT_CONTACT",
    )
    """How a customer reaches a person; named in the answer to a question the policies do not
    cover."""

    refund_approval_threshold: Decimal = Field(
        default=Decimal("500"), ge=0, validation_alias="STEWARD_REFUND_APPROVAL_THRESHOLD"
    )
    """Refunds above this amount need a person's approval."""
    max_input_chars: int = Field(default=8000, ge=1, validation_alias="STEWARD_MAX_INPUT_CHARS")
    """Longest message text accepted (the API answers 422 above it; input_filter refuses too)."""
    max_input_messages: int = Field(default=50, ge=1, validation_alias="STEWARD_MAX_INPUT_MESSAGES")
    """Most messages one request may send (run input, state write, `command.update`): 422."""
    max_model_calls: int = Field(default=8, ge=1, validation_alias="STEWARD_MAX_MODEL_CALLS")
    """Most model calls in one turn."""
    max_tool_calls: int = Field(default=12, ge=0, validation_alias="STEWARD_MAX_TOOL_CALLS")
    """Most tool calls in one turn."""
    max_repairs: int = Field(default=2, ge=0, validation_alias="STEWARD_MAX_REPAIRS")
    """Most repair attempts of an answer that failed schema validation, per turn."""
    recursion_limit: int = Field(default=40, ge=1, validation_alias="STEWARD_RECURSION_LIMIT")
    """LangGraph's recursion limit (graph steps) of one run."""
    rate_limit_per_minute: int = Field(
        default=6000, ge=0, validation_alias="STEWARD_RATE_LIMIT_PER_MINUTE"
    )
    """HTTP requests per API key (or client address) per minute and replica; 0 disables. The
    default lets one client use a whole replica (about 20 runs/s on 2 cores, 4 requests per
    run as agent-chat-ui sends them: 4,800/min) and stops a runaway loop."""
    cors_origins: Annotated[list[str] | None, NoDecode] = Field(
        default=None, validation_alias="STEWARD_CORS_ORIGINS"
    )
    """Browser origins allowed to call the API (CORS), comma-separated; `*` allows any, a `:*`
    port any port, empty allows none. Unset: none in production; in development
    `http://localhost` and `http://127.0.0.1` on any port (agent-chat-ui) and
    `https://smith.langchain.com` (LangGraph Studio)."""

    # Guardrails (core.guardrails; README "Guardrails and cost").
    guard_injection: bool = Field(default=True, validation_alias="STEWARD_GUARD_INJECTION")
    """Refuse input that tries to override instructions, jailbreak or spoof approvals."""
    injection_threshold: float = Field(
        default=1.0, gt=0, validation_alias="STEWARD_INJECTION_THRESHOLD"
    )
    """Sum of matched rule weights at which input is refused (strong rules weigh 1.0)."""
    guard_injection_semantic: bool = Field(
        default=True, validation_alias="STEWARD_GUARD_INJECTION_SEMANTIC"
    )
    """Also screen input the rules let through with the semantic layer: a classifier over the
    local sentence embeddings (all-MiniLM-L6-v2, shared with retrieval). Needs the injection
    guard on."""
    injection_semantic_threshold: float | None = Field(
        default=None, gt=0, le=1, validation_alias="STEWARD_INJECTION_SEMANTIC_THRESHOLD"
    )
    """Attack probability at which the semantic layer refuses input. Unset: the threshold
    calibrated with the shipped weights (core/guardrails/injection_model.json)."""
    guard_pii: Literal["redact", "block", "off"] = Field(
        default="redact", validation_alias="STEWARD_GUARD_PII"
    )
    """What input_filter does with PII and secrets in user text."""
    guard_output_pii: bool = Field(default=True, validation_alias="STEWARD_GUARD_OUTPUT_PII")
    """Redact PII and secrets in final answers (values quoted from retrieved policies stay)."""
    guard_refund_claims: bool = Field(default=True, validation_alias="STEWARD_GUARD_REFUND_CLAIMS")
    """Rewrite answers that claim a refund this turn did not execute."""
    default_role: str = Field(default="user", validation_alias="STEWARD_DEFAULT_ROLE")
    """Role assumed when a run's context names none (`RunContext.role`)."""
    role_tools: dict[str, list[str]] | None = Field(
        default=None, validation_alias="STEWARD_ROLE_TOOLS"
    )
    """JSON `{role: [tool, ...]}` replacing graph.tools.ROLE_TOOLS; unknown roles get none."""
    tool_rules: list[dict[str, Any]] = Field(
        default_factory=list, validation_alias="STEWARD_TOOL_RULES"
    )
    """JSON list of extra risk rules (core.guardrails.policy_rules.RiskRule fields)."""
    refund_deny_above: Decimal | None = Field(
        default=Decimal("5000"), ge=0, validation_alias="STEWARD_REFUND_DENY_ABOVE"
    )
    """Refunds above this are never issued through the assistant (finance handles them)."""

    # Cost control (core.budget).
    budget_user_day_usd: Decimal | None = Field(
        default=Decimal("5"), ge=0, validation_alias="STEWARD_BUDGET_USER_DAY_USD"
    )
    """LLM spend per user per UTC day; empty means unlimited."""
    budget_tenant_month_usd: Decimal | None = Field(
        default=Decimal("500"), ge=0, validation_alias="STEWARD_BUDGET_TENANT_MONTH_USD"
    )
    """LLM spend per tenant per UTC calendar month; empty means unlimited."""
    budget_thread_usd: Decimal | None = Field(
        default=Decimal("2"), ge=0, validation_alias="STEWARD_BUDGET_THREAD_USD"
    )
    """LLM spend per conversation thread; empty means unlimited."""
    budget_reservation_ttl_s: float = Field(
        default=600.0, gt=0, validation_alias="STEWARD_BUDGET_RESERVATION_TTL_S"
    )
    """A reservation never settled (crashed process) stops counting after this long."""
    model_prices: dict[str, dict[str, float]] = Field(
        default_factory=dict, validation_alias="STEWARD_MODEL_PRICES"
    )
    """JSON `{model: {"input": usd_per_mtok, "output": ..., "cached_input": ...}}` overriding
    the list prices in core.budget.prices (exact names and their dated snapshots)."""
    routing_max_routine_tokens: int = Field(
        default=150, ge=0, validation_alias="STEWARD_ROUTING_MAX_ROUTINE_TOKENS"
    )
    """User messages longer than this (o200k tokens) go to the strong model."""

    # Shutdown and provider back-off (server.drain, graph.retry; README "Configuration").
    shutdown_delay_s: float = Field(default=5.0, ge=0, validation_alias="STEWARD_SHUTDOWN_DELAY_S")
    """After SIGTERM/SIGINT, how long the listener keeps serving (with `/readyz` at 503) so
    load balancers stop sending before it closes."""
    run_shutdown_grace_s: float = Field(
        default=10.0, ge=0, validation_alias="STEWARD_RUN_SHUTDOWN_GRACE_S"
    )
    """Then how long running graphs get to reach a step boundary; what is left is cancelled
    and goes back to the queue for another replica."""
    llm_max_retry_after_s: float = Field(
        default=30.0, ge=0, validation_alias="STEWARD_LLM_MAX_RETRY_AFTER_S"
    )
    """Cap on a provider's `Retry-After` before the next attempt of a model call."""

    # The runs worker (server.runs.worker; README "The HTTP service").
    run_slots: int = Field(default=50, ge=1, validation_alias="STEWARD_RUN_SLOTS")
    """Runs one replica executes at once. Runs mostly wait on the model, so a replica needs
    about its throughput (runs/s) x the model's latency in slots: with a 1 s model on 2 cores,
    runs/s rose from 7.4 (10 slots) to 15.6 (50) and 16.0 (200) (bench/http_load.py); raise it
    for slower models. Runs hold a database connection only per statement."""
    run_lease_s: float = Field(default=30.0, gt=0, validation_alias="STEWARD_RUN_LEASE_S")
    """Lease of a claimed run, renewed every third of it; an expired lease hands the run over."""
    run_poll_s: float = Field(default=1.0, gt=0, validation_alias="STEWARD_RUN_POLL_S")
    """Claim attempts happen at least this often even without a notification."""
    run_max_attempts: int = Field(default=3, ge=1, validation_alias="STEWARD_RUN_MAX_ATTEMPTS")
    """A run whose lease expired this many times (its replica died) ends with `error`."""
    run_durability: Literal["sync", "async", "exit"] = Field(
        default="sync", validation_alias="STEWARD_RUN_DURABILITY"
    )
    """How runs checkpoint when the client does not say (`durability` of a run): `sync` saves
    every step before the next starts, `async` every step in the background (LangGraph
    Platform's default), `exit` only at interrupts and at the end (half the statements per run,
    no per-step history). Whatever the mode, the checkpoint a side effect follows from is saved
    before it runs (`graph.run_control`: under `async` and `exit` the run stops there and goes
    on in a second pass of the graph, which traces show as a second root), so a run a dead
    replica left replays at most steps without effects (docs/http-service.md). `sync` stays
    the default: under `exit` a replica that dies between the final checkpoint and the run's
    recorded end leaves a stream its takeover cannot rebuild (docs/http-service.md)."""

    # Logs, traces and the test harness (core.observability, server.app).
    log_format: Literal["json", "console"] | None = Field(
        default=None, validation_alias="STEWARD_LOG_FORMAT"
    )
    """`json` or `console`; unset (or anything else) means JSON in production, console
    otherwise."""
    log_level: str = Field(default="INFO", validation_alias="STEWARD_LOG_LEVEL")
    """Root log level (an unknown name means INFO)."""
    langsmith_redact: bool = Field(default=True, validation_alias="STEWARD_LANGSMITH_REDACT")
    """Mask PII and secrets in what is sent to LangSmith (`LANGSMITH_TRACING=true`); only
    `1`, `true`, `yes` or `on` keep it on once set."""
    blockbuster: bool = Field(default=False, validation_alias="STEWARD_BLOCKBUSTER")
    """Make any blocking call on the event loop raise (the e2e tests set it)."""

    @field_validator("db_prepare_threshold", mode="before")
    @classmethod
    def _empty_means_disabled(cls, value: Any) -> Any:
        """An empty value (or `none`) disables prepared statements (PgBouncer)."""
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return None
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: Any) -> Any:
        """Comma-separated origins (or a JSON list); each `*` or `scheme://host[:port]`."""
        if isinstance(value, str):
            text = value.strip()
            value = _json_list(text) if text.startswith("[") else text.split(",")
        if isinstance(value, list):
            origins = [str(item).strip().rstrip("/") for item in value if str(item).strip()]
            for origin in origins:
                if origin != "*" and not _ORIGIN.fullmatch(origin):
                    raise ValueError(f"not an origin: {origin!r}")
            return origins
        return value

    @model_validator(mode="after")
    def _pool_bounds(self) -> Settings:
        """The pool's floor may not exceed its ceiling."""
        if self.db_pool_min > self.db_pool_max:
            raise ValueError(
                f"STEWARD_DB_POOL_MIN ({self.db_pool_min}) is above STEWARD_DB_POOL_MAX "
                f"({self.db_pool_max})"
            )
        return self

    @field_validator(
        "refund_deny_above",
        "budget_user_day_usd",
        "budget_tenant_month_usd",
        "budget_thread_usd",
        mode="before",
    )
    @classmethod
    def _empty_means_unlimited(cls, value: Any) -> Any:
        """An empty value (or `none`, `unlimited`) switches a limit off."""
        if isinstance(value, str) and value.strip().lower() in ("", "none", "unlimited"):
            return None
        return value

    @field_validator("log_format", mode="before")
    @classmethod
    def _known_format_or_none(cls, value: Any) -> Any:
        """An unknown log format falls back to the environment's default instead of failing."""
        if isinstance(value, str):
            value = value.strip().lower()
            return value if value in ("json", "console") else None
        return value

    @field_validator("langsmith_redact", mode="before")
    @classmethod
    def _redact_unless_told(cls, value: Any) -> Any:
        """Empty keeps the masking; any value but 1/true/yes/on turns it off."""
        if isinstance(value, str):
            flag = value.strip().lower()
            return flag == "" or flag in ("1", "true", "yes", "on")
        return value

    @property
    def index_dir(self) -> Path:
        """Where `steward ingest` writes the FAISS index and its manifest."""
        return self.home / "index"

    @property
    def has_llm_provider(self) -> bool:
        """True when a real (or mock) OpenAI-compatible provider is configured."""
        return self.openai_api_key is not None or self.openai_base_url is not None


_ORIGIN = re.compile(r"https?://([A-Za-z0-9.\-]+|\[[0-9A-Fa-f:.]+\])(:([0-9]{1,5}|\*))?")
"""A browser origin: scheme, host and optional port (`:*` for any port; no path)."""


def _json_list(text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a JSON list ({exc.msg})") from None


class SettingsError(ConfigError, ValueError):
    """Invalid settings: the message has one line per variable, naming what it accepts."""


_UNLIMITED = frozenset(
    {"refund_deny_above", "budget_user_day_usd", "budget_tenant_month_usd", "budget_thread_usd"}
)
_ACCEPTED_OVERRIDES: dict[str, str] = {
    "database_url": "a PostgreSQL URL (`postgresql://user@host:5432/db`), or unset",
    "openai_base_url": "an http(s) URL of the API root (e.g. `http://127.0.0.1:8399/v1`), or unset",
    "home": "a directory path (relative paths are from the working directory)",
    "db_prepare_threshold": "an integer >= 0, or empty or `none` to disable prepared statements",
    "log_format": "`json` or `console` (anything else means the environment's default)",
    "log_level": "a logging level name: `DEBUG`, `INFO`, `WARNING`, `ERROR` or `CRITICAL` "
    "(anything else means INFO)",
    "langsmith_redact": "`1`, `true`, `yes` or `on` (or empty) keep masking on; any other value "
    "turns it off",
    "cors_origins": "comma-separated origins `scheme://host[:port]` (`:*`: any port; or a JSON "
    "list), `*` for any, empty for none",
    "role_tools": 'a JSON object `{"role": ["tool", ...]}`',
    "tool_rules": "a JSON list of objects (RiskRule fields)",
    "model_prices": 'a JSON object `{"model": {"input": usd, "output": usd, "cached_input": usd}}`',
}


def _bounds(info: FieldInfo) -> str:
    parts = []
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            parts.append(f">= {item.ge}")
        elif isinstance(item, annotated_types.Gt):
            parts.append(f"> {item.gt}")
        elif isinstance(item, annotated_types.Le):
            parts.append(f"<= {item.le}")
    return " " + " and ".join(parts) if parts else ""


_KINDS: dict[Any, tuple[str, str]] = {
    bool: ("boolean", "`true` or `false` (also `1`/`0`, `yes`/`no`, `on`/`off`)"),
    int: ("integer", "an integer"),
    float: ("number", "a number"),
    Decimal: ("decimal", "a decimal number"),
    Path: ("path", "a directory path"),
    SecretStr: ("secret", "any text (never logged)"),
    str: ("text", "any text"),
    dict: ("JSON object", "a JSON object"),
    list: ("list", "a JSON list"),
}
"""(type name, accepted values) of the plain types (and generic origins) settings use."""


def _kind(annotation: Any) -> tuple[str, str]:
    """(type name, accepted values) of one annotation, `None` left out."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _kind(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _kind(inner[0]) if len(inner) == 1 else ("text", "text")
    if origin is Literal:
        values = [f"`{v}`" for v in typing.get_args(annotation)]
        return "choice", ", ".join(values[:-1]) + " or " + values[-1]
    kind = _KINDS.get(origin or annotation)
    if kind is not None:
        return kind
    raise TypeError(f"no description of the accepted values of {annotation!r}")


def setting_type(name: str) -> str:
    """The kind of value field `name` of `Settings` takes (integer, boolean, choice, ...)."""
    return _kind(Settings.model_fields[name].annotation)[0]


def accepted_values(name: str) -> str:
    """What field `name` of `Settings` accepts, in words (for errors and the reference)."""
    info = Settings.model_fields[name]
    if name in _ACCEPTED_OVERRIDES:
        return _ACCEPTED_OVERRIDES[name]
    text = _kind(info.annotation)[1] + _bounds(info)
    if name in _UNLIMITED:
        text += ", or empty, `none` or `unlimited` for no limit"
    elif info.default is None:
        text += ", or unset"
    return text


def _field_by_variable() -> dict[str, str]:
    return {
        str(info.validation_alias): name
        for name, info in Settings.model_fields.items()
        if isinstance(info.validation_alias, str)
    }


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


def describe_invalid(exc: ValidationError | SourceError) -> str:
    """One line per invalid variable: its name, the value, and what it accepts."""
    fields = _field_by_variable()
    if isinstance(exc, SourceError):  # pydantic-settings could not decode a JSON value
        found = re.search(r'field "([a-z_0-9]+)"', str(exc))
        name = found.group(1) if found else ""
        variable = str(Settings.model_fields[name].validation_alias) if name else "a setting"
        accepted = f"expected {accepted_values(name)}" if name else str(exc)
        return f"invalid {variable}: not valid JSON; {accepted}"
    lines: dict[str, str] = {}
    for error in exc.errors():
        loc = error.get("loc") or ()
        variable = str(loc[0]) if loc else ""
        name = fields.get(variable) or (variable if variable in Settings.model_fields else "")
        if not name:  # a check across variables (model validator): its message names them
            reason = error["msg"].removeprefix("Value error, ")
            lines.setdefault(variable, f"invalid settings: {reason}")
            continue
        variable = str(Settings.model_fields[name].validation_alias)
        value = os.environ.get(variable, error.get("input"))
        # A custom check's message says what is wrong; a type error is the accepted values.
        custom = error["type"] == "value_error" or len(loc) > 1
        reason = f"{error['msg'].removeprefix('Value error, ')}; " if custom else ""
        where = "".join(f"[{part!r}]" for part in loc[1:])
        lines.setdefault(
            variable,
            f"invalid {variable}={_shown(value)}: {where}{' ' if where else ''}{reason}"
            f"expected {accepted_values(name)}",
        )
    return "\n".join(lines[key] for key in sorted(lines))


def load_settings(**values: Any) -> Settings:
    """Read the settings from the environment (and `values`).

    Raises:
        SettingsError: a variable has a value it does not accept (one line per variable).
    """
    try:
        return Settings(**values)
    except (ValidationError, SourceError) as exc:
        raise SettingsError(describe_invalid(exc)) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment.

    Raises:
        SettingsError: a variable has a value it does not accept.
    """
    return load_settings()


__all__ = [
    "Settings",
    "SettingsError",
    "accepted_values",
    "describe_invalid",
    "get_settings",
    "load_settings",
    "setting_type",
]
