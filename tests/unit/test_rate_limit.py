"""Too many requests from one key: 429 with Retry-After and our error body; others unaffected."""

from __future__ import annotations

from litestar import Litestar, get
from litestar.testing import AsyncTestClient

from core.settings import Settings
from server.errors import EXCEPTION_HANDLERS
from server.rate_limit import rate_limit_config


@get("/threads/search-like", sync_to_thread=False)
def probe() -> dict[str, bool]:
    return {"ok": True}


@get("/healthz", sync_to_thread=False)
def healthz() -> dict[str, bool]:
    return {"ok": True}


def app(per_minute: int) -> Litestar:
    config = rate_limit_config(Settings(STEWARD_RATE_LIMIT_PER_MINUTE=per_minute))  # type: ignore[call-arg]
    return Litestar(
        [probe, healthz],
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[config.middleware] if config else [],
    )


async def test_a_key_over_its_limit_gets_429_with_retry_after() -> None:
    async with AsyncTestClient(app(3)) as client:
        for _ in range(3):
            assert (await client.get("/threads/search-like", headers={"x-api-key": "a"})).is_success
        limited = await client.get("/threads/search-like", headers={"x-api-key": "a"})
        assert limited.status_code == 429
        assert limited.json()["detail"]
        assert int(limited.headers["retry-after"]) >= 0
        # another key, and the probes, are not limited by key a's traffic
        assert (await client.get("/threads/search-like", headers={"x-api-key": "b"})).is_success
        for _ in range(5):
            assert (await client.get("/healthz", headers={"x-api-key": "a"})).is_success


async def test_zero_disables_the_limit() -> None:
    assert rate_limit_config(Settings(STEWARD_RATE_LIMIT_PER_MINUTE=0)) is None  # type: ignore[call-arg]
