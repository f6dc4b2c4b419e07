"""Settings read exactly the documented variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings


def test_generic_variables_do_not_leak_into_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STEWARD_HOME", "STEWARD_ENV", "STEWARD_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", "/somewhere/else")
    monkeypatch.setenv("ENV", "production")
    monkeypatch.setenv("MODEL", "not-a-model")
    settings = Settings()
    assert settings.home == Path(".steward")
    assert settings.env == "development"
    assert settings.model == "gpt-4o-mini"


def test_documented_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_HOME", "/data/steward")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/steward")
    monkeypatch.setenv("STEWARD_REFUND_APPROVAL_THRESHOLD", "250")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    settings = Settings()
    assert settings.home == Path("/data/steward")
    assert settings.database_url == "postgresql://db/steward"
    assert str(settings.refund_approval_threshold) == "250"
    assert settings.has_llm_provider
