"""Budgets against real Postgres and the mock provider: reserve, settle, refuse, report."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from typing import Any

import pytest
from litestar import Litestar
from litestar.di import Provide
from litestar.testing import AsyncTestClient

from core.budget.ledger import PgUsageLedger
from core.identity import Principal
from graph.builder import DURABILITY, make_graph
from graph.context import RunContext
from graph.deps import Deps
from graph.runtime import Runtime
from server.errors import EXCEPTION_HANDLERS
from server.routes.usage import ROUTES
from steward.models import make_chat_model

pytestmark = pytest.mark.integration

QUESTION = "How long is the return window?"


def budget_graph(runtime: Runtime, **env: Any) -> Any:
    settings = runtime.deps.settings.model_copy(update=env)
    chat_model = make_chat_model(settings) if "model" in env else runtime.deps.chat_model
    deps = Deps(
        chat_model=chat_model,
        retriever=runtime.deps.retriever,
        orders=runtime.deps.orders,
        settings=settings,
        usage_ledger=PgUsageLedger(runtime.pool, settings),
    )
    return make_graph(runtime.checkpointer, deps=deps)


def config(user: str, tenant: str = "acme") -> dict[str, Any]:
    return {"configurable": {"thread_id": str(uuid.uuid4()), "user_id": user, "tenant_id": tenant}}


async def ask(graph: Any, text: str, cfg: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = await graph.ainvoke(
        {"messages": [{"role": "user", "content": text}]},
        cfg,
        context=RunContext(
            user_id=cfg["configurable"]["user_id"], tenant_id=cfg["configurable"]["tenant_id"]
        ),
        durability=DURABILITY,
    )
    return out


async def ledger_rows(runtime: Runtime, **where: str) -> list[dict[str, Any]]:
    clause = " AND ".join(f"{k} = %({k})s" for k in where)
    async with runtime.pool.connection() as conn:
        rows = await (
            await conn.execute(
                f"SELECT * FROM usage_ledger WHERE {clause} ORDER BY created_at", where
            )
        ).fetchall()
    return [dict(r) for r in rows]


async def test_every_call_is_estimated_reserved_and_settled_from_provider_usage(
    runtime: Runtime,
    mock_llm: Any,
    mock_llm_clean: None,
) -> None:
    user = f"u-{uuid.uuid4().hex[:8]}"
    graph = budget_graph(runtime)
    await ask(graph, QUESTION, config(user))
    await ask(graph, "Please refund $120 on order LS-10007, it arrived torn.", config(user))
    rows = await ledger_rows(runtime, user_id=user)
    requests = await mock_llm.requests()
    assert len(rows) == len(requests) >= 3
    for row in rows:
        assert row["status"] == "settled" and row["usage_source"] == "provider"
        assert row["tenant_id"] == "acme" and row["model"] == runtime.deps.settings.model
        error = abs(row["estimated_input_tokens"] - row["input_tokens"]) / row["input_tokens"]
        assert error <= 0.05, (row["estimated_input_tokens"], row["input_tokens"])
        assert 0 < row["cost_usd"] <= row["reserved_usd"]


async def test_budget_holds_under_fifty_concurrent_runs_of_one_user(
    runtime: Runtime,
    mock_llm_clean: None,
) -> None:
    budget = Decimal("0.005")
    user = f"u-{uuid.uuid4().hex[:8]}"
    graph = budget_graph(runtime, budget_user_day_usd=budget)
    outs = await asyncio.gather(*(ask(graph, QUESTION, config(user)) for _ in range(50)))
    refusals = [o["response"]["refusal"] for o in outs]
    rows = await ledger_rows(runtime, user_id=user)
    spent = sum((r["cost_usd"] for r in rows if r["status"] == "settled"), Decimal(0))
    largest_estimate = max(r["reserved_usd"] for r in rows)
    assert spent <= budget + largest_estimate
    assert spent <= budget, "actual usage never exceeds its reservation with exact estimates"
    assert refusals.count(None) == len(rows) > 0, "each granted call answered a run"
    assert refusals.count("budget_exceeded") == 50 - len(rows) > 0
    assert all(r["status"] == "settled" for r in rows)


async def test_an_exhausted_budget_refuses_before_calling_the_model(
    runtime: Runtime,
    mock_llm: Any,
    mock_llm_clean: None,
) -> None:
    graph = budget_graph(runtime, budget_thread_usd=Decimal("0.0000001"))
    out = await ask(graph, QUESTION, config(f"u-{uuid.uuid4().hex[:8]}"))
    assert out["response"]["refusal"] == "budget_exceeded"
    assert "usage limit" in out["response"]["answer"]
    assert await mock_llm.requests() == []


async def test_a_failed_call_releases_its_reservation(
    runtime: Runtime,
    mock_llm: Any,
    mock_llm_clean: None,
) -> None:
    from core.errors import ProviderError

    user = f"u-{uuid.uuid4().hex[:8]}"
    graph = budget_graph(runtime)
    attempts = runtime.deps.settings.llm_max_attempts
    await mock_llm.add_faults([{"kind": "status", "status": 500, "count": attempts}])
    with pytest.raises(ProviderError):
        await ask(graph, QUESTION, config(user))
    rows = await ledger_rows(runtime, user_id=user)
    assert [r["status"] for r in rows] == ["released"] * attempts
    assert all(r["cost_usd"] == 0 for r in rows)


async def test_routine_and_complex_turns_use_their_models(
    runtime: Runtime,
    mock_llm: Any,
    mock_llm_clean: None,
) -> None:
    graph = budget_graph(runtime, routine_model="gpt-4.1-nano", model="gpt-4o")
    user = f"u-{uuid.uuid4().hex[:8]}"
    routine = await ask(graph, QUESTION, config(user))
    complex_ = await ask(
        graph, "Please refund $120 on order LS-10007, it arrived torn.", config(user)
    )
    assert (routine["route"], complex_["route"]) == ("routine", "strong")
    models = [r["model"] for r in await mock_llm.requests()]
    assert models[0] == "gpt-4.1-nano" and set(models[1:]) == {"gpt-4o"}
    rows = await ledger_rows(runtime, user_id=user)
    assert [r["route"] for r in rows] == ["routine", "strong", "strong"]


def usage_app(runtime: Runtime, principal: Principal) -> Litestar:
    async def provide_principal() -> Principal:
        return principal

    async def provide_runtime() -> Runtime:
        return runtime

    return Litestar(
        route_handlers=ROUTES,
        exception_handlers=EXCEPTION_HANDLERS,
        dependencies={"principal": Provide(provide_principal), "runtime": Provide(provide_runtime)},
    )


async def test_usage_route_shows_own_usage_and_admins_see_the_tenant(
    runtime: Runtime,
    mock_llm_clean: None,
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    graph = budget_graph(runtime)
    await ask(graph, QUESTION, config("ann", tenant))
    await ask(graph, QUESTION, config("ann", tenant))
    await ask(graph, QUESTION, config("bob", tenant))

    ann = Principal(key_id="k1", user_id="ann", tenant_id=tenant, role="user")
    async with AsyncTestClient(app=usage_app(runtime, ann)) as client:
        own = (await client.get("/usage", params={"period": "day"})).json()
        assert own["scope"] == "user" and own["totals"]["calls"] == 2
        assert Decimal(own["totals"]["cost_usd"]) > 0
        day = own["budgets"]["user_day"]
        assert Decimal(day["spent_usd"]) + Decimal(day["remaining_usd"]) == Decimal(
            day["limit_usd"]
        )
        assert (await client.get("/usage", params={"tenant": "other"})).status_code == 403

    outsider = Principal(key_id="k3", user_id="root", tenant_id="elsewhere", role="admin")
    async with AsyncTestClient(app=usage_app(runtime, outsider)) as client:
        assert (await client.get("/usage", params={"tenant": tenant})).status_code == 403

    admin = Principal(key_id="k2", user_id="root", tenant_id=tenant, role="admin")
    async with AsyncTestClient(app=usage_app(runtime, admin)) as client:
        view = (await client.get("/usage", params={"tenant": tenant})).json()
        assert view["scope"] == "tenant" and view["totals"]["calls"] == 3
        assert {r["user_id"]: r["calls"] for r in view["by_user"]} == {"ann": 2, "bob": 1}
        one = (await client.get("/usage", params={"tenant": tenant, "user": "bob"})).json()
        assert one["scope"] == "user" and one["totals"]["calls"] == 1
