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


# One value each setting refuses, by kind; the settings that take any text have none.
BAD_VALUES = {
    "integer": "many",
    "number": "soon",
    "decimal": "lots",
    "boolean": "maybe",
    "choice": "bogus",
    "JSON object": "[1]",
    "list": "{}",
}
ACCEPT_ANYTHING = {"text", "path", "secret"}
LENIENT = {"log_format", "log_level", "langsmith_redact"}  # unknown values mean the default


def _variable(name: str) -> str:
    return str(Settings.model_fields[name].validation_alias)


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_a_bad_value_is_one_line_naming_the_variable_and_what_it_accepts(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import SettingsError, accepted_values, load_settings, setting_type

    kind = setting_type(name)
    if kind in ACCEPT_ANYTHING or name in LENIENT:  # nothing to refuse: any text loads
        monkeypatch.setenv(_variable(name), "x y z")
        load_settings()
        return
    bad = "localhost:3000" if name == "cors_origins" else BAD_VALUES[kind]
    monkeypatch.setenv(_variable(name), bad)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.splitlines() == [message], message
    assert message.startswith(f"invalid {_variable(name)}={bad!r}:"), message
    assert accepted_values(name) in message


def test_bounds_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import SettingsError, load_settings

    monkeypatch.setenv("STEWARD_RETRIEVAL_K", "0")
    monkeypatch.setenv("STEWARD_LLM_TIMEOUT_S", "-1")
    with pytest.raises(SettingsError) as caught:
        load_settings()
    lines = str(caught.value).splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "invalid STEWARD_LLM_TIMEOUT_S",
        "invalid STEWARD_RETRIEVAL_K",
    ]
    assert "an integer >= 1" in lines[1]


def test_pool_floor_above_ceiling_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from core.settings import SettingsError, load_settings

    monkeypatch.setenv("STEWARD_DB_POOL_MIN", "30")
    expected = r"STEWARD_DB_POOL_MIN \(30\) is above STEWARD_DB_POOL_MAX \(20\)"
    with pytest.raises(SettingsError, match=expected):
        load_settings()


@pytest.mark.parametrize("value", ["", " ", "none", "None"])
def test_empty_prepare_threshold_disables_prepared_statements(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STEWARD_DB_PREPARE_THRESHOLD", value)
    assert Settings().db_prepare_threshold is None


def test_cors_origins_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STEWARD_CORS_ORIGINS", "http://localhost:3000, https://ops.example.com/")
    assert Settings().cors_origins == ["http://localhost:3000", "https://ops.example.com"]
    monkeypatch.setenv("STEWARD_CORS_ORIGINS", '["*"]')
    assert Settings().cors_origins == ["*"]
    monkeypatch.setenv("STEWARD_CORS_ORIGINS", "")
    assert Settings().cors_origins == []
    monkeypatch.delenv("STEWARD_CORS_ORIGINS")
    assert Settings().cors_origins is None
