"""Service settings, read once from the environment (names are part of the contract)."""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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
    db_pool_max: int = Field(default=10, validation_alias="STEWARD_DB_POOL_MAX")
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
    max_input_chars: int = Field(default=8000, validation_alias="STEWARD_MAX_INPUT_CHARS")
    max_model_calls: int = Field(default=8, validation_alias="STEWARD_MAX_MODEL_CALLS")
    max_tool_calls: int = Field(default=12, validation_alias="STEWARD_MAX_TOOL_CALLS")
    max_repairs: int = Field(default=2, validation_alias="STEWARD_MAX_REPAIRS")
    recursion_limit: int = Field(default=40, validation_alias="STEWARD_RECURSION_LIMIT")

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
