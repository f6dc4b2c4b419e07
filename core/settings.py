"""Service settings, read once from the environment (names are part of the contract)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can set; see the README's configuration table."""

    # The prefix keeps generic variables (HOME, ENV, MODEL) from matching fields by name;
    # every field still reads exactly the variable named in its alias.
    model_config = SettingsConfigDict(
        env_file=None, extra="ignore", populate_by_name=True, env_prefix="STEWARD_"
    )

    env: Literal["development", "production"] = Field(
        default="development", validation_alias="STEWARD_ENV"
    )
    """`production` refuses to start without a real LLM provider."""
    home: Path = Field(default=Path(".steward"), validation_alias="STEWARD_HOME")
    """Data directory: embedded Postgres, knowledge index, keys."""
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    """Postgres URL; unset means an embedded Postgres under `home`."""
    db_pool_min: int = Field(default=2, validation_alias="STEWARD_DB_POOL_MIN")
    db_pool_max: int = Field(default=20, validation_alias="STEWARD_DB_POOL_MAX")
    """Above STEWARD_RUN_SLOTS (10): runs and requests share the pool."""
    db_pool_timeout_s: float = Field(
        default=2.0, gt=0, validation_alias="STEWARD_DB_POOL_TIMEOUT_S"
    )
    """How long a request waits for a database connection before its 503 (runs retry)."""
    db_prepare_threshold: int | None = Field(
        default=0, validation_alias="STEWARD_DB_PREPARE_THRESHOLD"
    )
    """0 prepares every statement; set empty/None behind PgBouncer in transaction mode."""

    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    model: str = Field(default="gpt-4o-mini", validation_alias="STEWARD_MODEL")
    routine_model: str = Field(default="gpt-4o-mini", validation_alias="STEWARD_ROUTINE_MODEL")
    llm_timeout_s: float = Field(default=30.0, validation_alias="STEWARD_LLM_TIMEOUT_S")
    llm_max_attempts: int = Field(default=3, validation_alias="STEWARD_LLM_MAX_ATTEMPTS")
    llm_max_tokens: int = Field(default=1024, validation_alias="STEWARD_LLM_MAX_TOKENS")

    embeddings: Literal["local", "openai"] = Field(
        default="local", validation_alias="STEWARD_EMBEDDINGS"
    )
    openai_embedding_model: str = Field(
        default="text-embedding-3-small", validation_alias="STEWARD_OPENAI_EMBEDDING_MODEL"
    )
    retrieval_k: int = Field(default=4, validation_alias="STEWARD_RETRIEVAL_K")

    refund_approval_threshold: Decimal = Field(
        default=Decimal("500"), validation_alias="STEWARD_REFUND_APPROVAL_THRESHOLD"
    )
    max_input_chars: int = Field(default=8000, ge=1, validation_alias="STEWARD_MAX_INPUT_CHARS")
    """Longest message text accepted (the API answers 422 above it; input_filter refuses too)."""
    max_input_messages: int = Field(default=50, ge=1, validation_alias="STEWARD_MAX_INPUT_MESSAGES")
    """Most messages one request may send (run input, state write, `command.update`): 422."""
    max_model_calls: int = Field(default=8, validation_alias="STEWARD_MAX_MODEL_CALLS")
    max_tool_calls: int = Field(default=12, validation_alias="STEWARD_MAX_TOOL_CALLS")
    max_repairs: int = Field(default=2, validation_alias="STEWARD_MAX_REPAIRS")
    recursion_limit: int = Field(default=40, validation_alias="STEWARD_RECURSION_LIMIT")
    rate_limit_per_minute: int = Field(
        default=1200, validation_alias="STEWARD_RATE_LIMIT_PER_MINUTE"
    )
    """HTTP requests per API key (or client address) per minute and replica; 0 disables."""

    # Guardrails (core.guardrails; README "Guardrails and cost").
    guard_injection: bool = Field(default=True, validation_alias="STEWARD_GUARD_INJECTION")
    """Refuse input that tries to override instructions, jailbreak or spoof approvals."""
    injection_threshold: float = Field(
        default=1.0, gt=0, validation_alias="STEWARD_INJECTION_THRESHOLD"
    )
    """Sum of matched rule weights at which input is refused (strong rules weigh 1.0)."""
    guard_pii: Literal["redact", "block", "off"] = Field(
        default="redact", validation_alias="STEWARD_GUARD_PII"
    )
    """What input_filter does with PII and secrets in user text."""
    guard_output_pii: bool = Field(default=True, validation_alias="STEWARD_GUARD_OUTPUT_PII")
    """Redact PII and secrets in final answers (values quoted from retrieved policies stay)."""
    guard_refund_claims: bool = Field(default=True, validation_alias="STEWARD_GUARD_REFUND_CLAIMS")
    """Rewrite answers that claim a refund this turn did not execute."""
    default_role: str = Field(default="user", validation_alias="STEWARD_DEFAULT_ROLE")
    """Role assumed when a run's config names none (`configurable.role`)."""
    role_tools: dict[str, list[str]] | None = Field(
        default=None, validation_alias="STEWARD_ROLE_TOOLS"
    )
    """JSON `{role: [tool, ...]}` replacing graph.tools.ROLE_TOOLS; unknown roles get none."""
    tool_rules: list[dict[str, Any]] = Field(
        default_factory=list, validation_alias="STEWARD_TOOL_RULES"
    )
    """JSON list of extra risk rules (core.guardrails.policy_rules.RiskRule fields)."""
    refund_deny_above: Decimal | None = Field(
        default=Decimal("5000"), validation_alias="STEWARD_REFUND_DENY_ABOVE"
    )
    """Refunds above this are never issued through the assistant (finance handles them)."""

    # Cost control (core.budget).
    budget_user_day_usd: Decimal | None = Field(
        default=Decimal("5"), validation_alias="STEWARD_BUDGET_USER_DAY_USD"
    )
    """LLM spend per user per UTC day; empty means unlimited."""
    budget_tenant_month_usd: Decimal | None = Field(
        default=Decimal("500"), validation_alias="STEWARD_BUDGET_TENANT_MONTH_USD"
    )
    """LLM spend per tenant per UTC calendar month; empty means unlimited."""
    budget_thread_usd: Decimal | None = Field(
        default=Decimal("2"), validation_alias="STEWARD_BUDGET_THREAD_USD"
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
    the list prices in core.observability.pricing."""
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

    @property
    def index_dir(self) -> Path:
        """Where `steward ingest` writes the FAISS index and its manifest."""
        return self.home / "index"

    @property
    def has_llm_provider(self) -> bool:
        """True when a real (or mock) OpenAI-compatible provider is configured."""
        return self.openai_api_key is not None or self.openai_base_url is not None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings, read once from the environment."""
    return Settings()


__all__ = ["Settings", "get_settings"]
