"""A caller whose budget is spent gets HTTP 429 with Retry-After, before any run starts."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from langgraph_sdk.errors import RateLimitError

from core.budget.budgets import Payer
from core.budget.estimates import CallEstimate
from core.budget.ledger import PgUsageLedger
from core.db.pool import DbPool
from core.settings import Settings

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e

QUESTION: Any = {"messages": [{"role": "user", "content": "How long is the return window?"}]}


async def spend(pool: DbPool, tenant: str, user: str, usd: str) -> None:
    """Charge a settled call of `usd` to the user, through the ledger (counters included)."""
    unlimited = Settings().model_copy(
        update={"budget_user_day_usd": None, "budget_tenant_month_usd": None}
    )
    ledger = PgUsageLedger(pool, unlimited)
    payer = Payer(tenant_id=tenant, user_id=user, thread_id=None, run_id=None)
    free = CallEstimate(model="gpt-4o-mini", input_tokens=0, max_output_tokens=0, usd=Decimal(0))
    reservation = await ledger.reserve(payer, free, route=None)
    assert reservation.call_id is not None
    await ledger.settle(
        reservation.call_id,
        input_tokens=1000,
        output_tokens=100,
        cached_input_tokens=0,
        cost_usd=Decimal(usd),
        source="provider",
    )


async def test_spent_daily_budget_answers_429_with_retry_after(
    server: RunningServer, db_pool: DbPool
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    key = await server.keys("spender", tenant, "user")
    client = server.client(key)
    thread = await client.threads.create()
    # Under budget: the run is accepted.
    assert (await client.runs.create(thread["thread_id"], "agent", input=QUESTION))["run_id"]
    await spend(db_pool, tenant, "spender", "6")  # over $5/day, under $500/month
    with pytest.raises(RateLimitError):
        await client.runs.create(thread["thread_id"], "agent", input=QUESTION)
    async with httpx.AsyncClient(base_url=server.url, headers={"x-api-key": key}) as http:
        answer = await http.post(
            f"/threads/{thread['thread_id']}/runs/wait",
            json={"assistant_id": "agent", "input": QUESTION},
        )
    assert answer.status_code == 429
    assert "budget" in answer.json()["detail"]
    assert 0 < int(answer.headers["retry-after"]) <= 86_400
    # Another user of the same tenant is not blocked by this user's daily budget.
    other = server.client(await server.keys("frugal", tenant, "user"))
    other_thread = await other.threads.create()
    assert await other.runs.create(other_thread["thread_id"], "agent", input=QUESTION)
