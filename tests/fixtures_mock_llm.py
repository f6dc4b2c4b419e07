"""Pytest plugin: the mock LLM server as a subprocess (`python -m mock_llm`).

Fixtures:
- `mock_llm` (session): starts the server on a free loopback port and yields a `MockLLM`.
- `mock_llm_clean` (function): the same server with its fault queue and request log cleared.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from mock_llm.process import MockLLM, MockLLMStartError, running_mock_llm

__all__ = ["MockLLM", "fx_mock_llm", "fx_mock_llm_clean"]


@pytest.fixture(scope="session", name="mock_llm")
def fx_mock_llm() -> Iterator[MockLLM]:
    """Run the mock LLM server for the whole test session."""
    try:
        with running_mock_llm() as mock:
            yield mock
    except MockLLMStartError as exc:
        pytest.fail(str(exc))


@pytest.fixture(name="mock_llm_clean")
async def fx_mock_llm_clean(mock_llm: MockLLM) -> AsyncIterator[MockLLM]:
    """The session's mock LLM with no queued faults and an empty request log."""
    await mock_llm.clear_faults()
    await mock_llm.clear_requests()
    yield mock_llm
