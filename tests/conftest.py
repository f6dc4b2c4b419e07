"""Shared fixtures: a throwaway database, the mock LLM over HTTP, the real index, a runtime."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from core.settings import Settings

pytest_plugins = ["tests.fixtures_db", "tests.fixtures_mock_llm", "tests.fixtures_server"]

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "data" / "policies"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session", name="steward_home")
def fx_steward_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private STEWARD_HOME holding the index built from the shipped corpus."""
    from core.knowledge.embeddings import LocalEmbedder
    from core.knowledge.ingest import ingest

    home = tmp_path_factory.mktemp("steward-home")
    ingest([CORPUS], home / "index", LocalEmbedder(), progress=False)
    return home


@pytest.fixture(scope="session", name="settings")
def fx_settings(steward_home: Path, database_url: str, mock_llm: object) -> Settings:
    """Settings pointing at the test database, the mock provider and the test index."""
    return Settings(  # type: ignore[call-arg]
        STEWARD_HOME=steward_home,
        DATABASE_URL=database_url,
        OPENAI_BASE_URL=mock_llm.base_url,  # type: ignore[attr-defined]
        OPENAI_API_KEY="test-key",
        STEWARD_LLM_TIMEOUT_S=2.0,
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session", name="runtime")
async def fx_runtime(settings: Settings) -> AsyncIterator[object]:
    """The real workflow: Postgres checkpointer, ChatOpenAI to the mock, FAISS index."""
    from steward.runtime import open_runtime

    async with open_runtime(settings) as runtime:
        yield runtime
