"""Which chat model the process talks to: a real provider, or the offline demo model."""

from __future__ import annotations

import logging

from langchain_core.language_models import BaseChatModel

from core.errors import ConfigError
from core.settings import Settings

log = logging.getLogger(__name__)


def require_provider(settings: Settings) -> None:
    """Refuse production without an LLM provider (development has the offline demo model).

    Raises:
        ConfigError: production with neither OPENAI_API_KEY nor OPENAI_BASE_URL.
    """
    if settings.env == "production" and not settings.has_llm_provider:
        raise ConfigError(
            "STEWARD_ENV=production needs an LLM provider: set OPENAI_API_KEY (and "
            "OPENAI_BASE_URL for a provider other than OpenAI); the offline demo model is for "
            "development only"
        )


def make_chat_model(settings: Settings, *, model: str | None = None) -> BaseChatModel:
    """Return ChatOpenAI for any OpenAI-compatible provider, or the offline demo model.

    Production refuses to run without a provider; development falls back loudly.
    """
    if settings.has_llm_provider:
        from langchain_openai import ChatOpenAI

        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unset"
        return ChatOpenAI(
            model=model or settings.model,
            base_url=settings.openai_base_url,
            api_key=key,  # type: ignore[arg-type]  # langchain-openai accepts str or SecretStr
            stream_usage=True,
            max_retries=0,  # the graph's node retry policy owns retries
            timeout=settings.llm_timeout_s,
            max_completion_tokens=settings.llm_max_tokens,
            use_responses_api=False,
        )
    require_provider(settings)
    from mock_llm.demo_model import DemoChatModel

    log.warning(
        "No OPENAI_API_KEY or OPENAI_BASE_URL set: using the OFFLINE DEMO MODEL "
        "(scripted replies, not a real LLM)."
    )
    return DemoChatModel()
