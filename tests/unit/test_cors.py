"""CORS follows STEWARD_CORS_ORIGINS; unset: local pages and Studio in development, none in
production. Checked with real preflight requests against the app (no lifespan needed)."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from core.settings import Settings
from server.app import create_app

# The app's route handlers use dependencies Litestar infers (its deprecation warning, once per
# handler and app); not what these tests are about.
pytestmark = pytest.mark.filterwarnings("ignore::litestar.exceptions.LitestarDeprecationWarning")


def _no_runtime(settings: Settings, **overrides: Any) -> Any:
    raise AssertionError("the preflight must not need the runtime")


def preflight(settings: Settings, origin: str) -> dict[str, str]:
    client = TestClient(create_app(_no_runtime, settings))  # not entered: no lifespan
    response = client.options(
        "/threads/search",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-api-key, content-type",
        },
    )
    return {k.lower(): v for k, v in response.headers.items()}


def simple(settings: Settings, origin: str) -> dict[str, str]:
    client = TestClient(create_app(_no_runtime, settings))
    response = client.get("/healthz", headers={"Origin": origin})
    return {k.lower(): v for k, v in response.headers.items()}


@pytest.mark.parametrize(
    "origin",
    [
        "http://localhost:3000",  # agent-chat-ui
        "http://127.0.0.1:5173",
        "http://localhost",
        "https://smith.langchain.com",  # LangGraph Studio
    ],
)
def test_development_allows_local_pages_and_studio(origin: str) -> None:
    settings = Settings(STEWARD_ENV="development")  # type: ignore[call-arg]
    headers = preflight(settings, origin)
    assert headers.get("access-control-allow-origin") == origin
    assert "x-api-key" in headers.get("access-control-allow-headers", "").lower()
    assert "POST" in headers.get("access-control-allow-methods", "")


@pytest.mark.parametrize(
    "origin",
    ["https://evil.example", "http://localhost.evil.example", "https://smith.langchain.com.evil"],
)
def test_development_refuses_other_origins(origin: str) -> None:
    settings = Settings(STEWARD_ENV="development")  # type: ignore[call-arg]
    assert "access-control-allow-origin" not in preflight(settings, origin)
    assert "access-control-allow-origin" not in simple(settings, origin)


def test_production_allows_no_origin_by_default() -> None:
    settings = Settings(STEWARD_ENV="production")  # type: ignore[call-arg]
    for origin in ("http://localhost:3000", "https://smith.langchain.com"):
        assert "access-control-allow-origin" not in preflight(settings, origin)
        assert "access-control-allow-origin" not in simple(settings, origin)


def test_configured_origins_replace_the_defaults() -> None:
    settings = Settings(  # type: ignore[call-arg]
        STEWARD_ENV="production", STEWARD_CORS_ORIGINS="https://ops.example.com"
    )
    assert preflight(settings, "https://ops.example.com")["access-control-allow-origin"] == (
        "https://ops.example.com"
    )
    headers = simple(settings, "https://ops.example.com")
    assert headers["access-control-allow-origin"] == "https://ops.example.com"
    assert "x-pagination-total" in headers["access-control-expose-headers"]
    assert "access-control-allow-origin" not in preflight(settings, "http://localhost:3000")

    dev_off = Settings(STEWARD_ENV="development", STEWARD_CORS_ORIGINS="")  # type: ignore[call-arg]
    assert "access-control-allow-origin" not in preflight(dev_off, "http://localhost:3000")

    anyone = Settings(STEWARD_CORS_ORIGINS="*")  # type: ignore[call-arg]
    assert preflight(anyone, "https://elsewhere.example")["access-control-allow-origin"] == "*"
