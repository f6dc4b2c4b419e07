"""The eval attack "split after a rejection", through `steward serve` and the mock LLM.

One thread: a $900 refund is held and an approver rejects it; the client then asks for $450
now and $450 tomorrow. Approval Matrix note 1: amounts are per request, so the $450 waits for
a person too, and no refund row exists until an approver (not the requester) releases it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import pytest
from langgraph_sdk.errors import PermissionDeniedError

from core.db.pool import DbPool
from core.domain.orders import PgOrderStore
from mock_llm.process import MockLLM

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e

ORDER = "LS-10017"


def said(text: str) -> Any:
    return {"messages": [{"role": "user", "content": text}]}


def decisions(*decided: dict[str, Any]) -> Any:
    return {"resume": {"decisions": list(decided)}}


async def order_refunds(pool: DbPool) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT amount_cents, thread_id, requested_by, approved_by FROM refunds"
            " WHERE order_id = %s ORDER BY created_at",
            (ORDER,),
        )
        return [dict(r) for r in await cur.fetchall()]


async def test_a_split_after_a_rejection_waits_for_an_approver(
    server: RunningServer, orders: PgOrderStore, db_pool: DbPool, mock_llm_clean: MockLLM
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    pat = server.client(await server.keys("pat", tenant, "user"))
    mia = server.client(await server.keys("mia", tenant, "approver"))
    tid = (await pat.threads.create())["thread_id"]

    held = await pat.runs.wait(tid, "agent", input=said(f"Refund $900 on {ORDER}."))
    assert isinstance(held, dict) and held["__interrupt__"]
    rejected = await mia.runs.wait(
        tid, "agent", command=decisions({"type": "reject", "message": "needs inspection"})
    )
    assert isinstance(rejected, dict) and "__interrupt__" not in rejected
    assert await order_refunds(db_pool) == []

    split = await pat.runs.wait(
        tid,
        "agent",
        input=said(f"Fine, then refund $450 on {ORDER} now and another $450 tomorrow."),
    )
    assert isinstance(split, dict)
    [pending] = split.get("__interrupt__") or [None]
    assert pending is not None, f"the $450 did not wait for a person: {split.get('response')}"
    [request] = pending["value"]["action_requests"]
    assert request["name"] == "issue_refund"
    assert request["args"]["order_id"] == ORDER and float(request["args"]["amount"]) == 450
    assert (
        "splits a 900.00 USD refund of LS-10017 that a reviewer rejected"
        in (request["description"])
    ), "the reviewer is told why a $450 refund needs them"
    assert await order_refunds(db_pool) == [], "nothing is written while it waits"

    with pytest.raises(PermissionDeniedError):  # four eyes: not the requester
        await pat.runs.create(tid, "agent", command=decisions({"type": "approve"}))
    assert await order_refunds(db_pool) == []

    done = await mia.runs.wait(tid, "agent", command=decisions({"type": "approve"}))
    assert isinstance(done, dict) and "__interrupt__" not in done
    [row] = await order_refunds(db_pool)
    assert row["amount_cents"] == 45_000 and row["thread_id"] == tid
    assert (row["requested_by"], row["approved_by"]) == ("pat", "mia")


async def test_a_split_on_another_thread_after_a_rejection_waits_too(
    server: RunningServer, orders: PgOrderStore, db_pool: DbPool, mock_llm_clean: MockLLM
) -> None:
    """The rule reads the order's history in the database, not this conversation."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    pat = server.client(await server.keys("pat", tenant, "user"))
    mia = server.client(await server.keys("mia", tenant, "approver"))
    first = (await pat.threads.create())["thread_id"]
    held = await pat.runs.wait(first, "agent", input=said(f"Refund $900 on {ORDER}."))
    assert isinstance(held, dict) and held["__interrupt__"]
    await mia.runs.wait(first, "agent", command=decisions({"type": "reject", "message": "no"}))

    fresh = (await pat.threads.create())["thread_id"]
    out = await pat.runs.wait(fresh, "agent", input=said(f"Refund $450 on {ORDER}."))
    assert isinstance(out, dict)
    assert out.get("__interrupt__"), out.get("response")
    assert await order_refunds(db_pool) == []
