"""Which chat model the process talks to: a real provider, or the offline demo model."""

from __future__ import annotations

import logging

from langchain_core.language_models import BaseChatModel

from core.errors import ConfigError
from core.settings import Settings

log = logging.getLogger(__name__)


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
    if settings.env == "production":
        raise ConfigError("STEWARD_ENV=production needs OPENAI_API_KEY or OPENAI_BASE_URL")
    from mock_llm.demo_model import DemoChatModel

    log.warning(
        "No OPENAI_API_KEY or OPENAI_BASE_URL set: using the OFFLINE DEMO MODEL "
        "(scripted replies, not a real LLM)."
    )
    return DemoChatModel()
