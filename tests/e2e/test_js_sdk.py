"""The official JS SDK (`@langchain/langgraph-sdk`) against `steward serve`: tests/js/*.test.mjs.

The suite runs with `node --test` (built into Node, no test framework to install), one file at
a time because the files share the mock LLM's fault queue. Each test file records what it did
with approvals in a report; afterwards this wrapper checks the database agrees: exactly one
refund for each approved order, none for a rejected or resolved one, every approval row
accounted for, and no run left pending or running.

Skipped when `node` or `tests/js/node_modules` is missing (`make js-deps` installs it), unless
`CI=true`, where a missing toolchain fails the test instead.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from core.db.pool import DbPool
from core.domain.orders import PgOrderStore
from mock_llm.process import MockLLM

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

JS_DIR = Path(__file__).resolve().parents[1] / "js"
SDK_PACKAGE = JS_DIR / "node_modules" / "@langchain" / "langgraph-sdk" / "package.json"
SUITE_TIMEOUT_S = 480.0
SETTLE_TIMEOUT_S = 15.0
"""How long runs may take to reach a terminal status after the suite (a cancel's tail)."""


def node_or_skip() -> str:
    """The `node` executable; skip (fail when `CI=true`) if it or the SDK is missing."""
    node = shutil.which("node")
    missing = (
        "node is not on PATH"
        if node is None
        else f"{SDK_PACKAGE.relative_to(JS_DIR.parent.parent)} is missing: run `make js-deps`"
        if not SDK_PACKAGE.is_file()
        else None
    )
    if missing is None and node is not None:
        return node
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the JS SDK suite cannot run: {missing}")
    pytest.skip(missing or "")


@pytest.fixture(scope="session", name="node")
def fx_node() -> str:
    """`node`, checked before the server starts (a session fixture listed first)."""
    return node_or_skip()


SUMMARY = re.compile("^\N{INFORMATION SOURCE} (\\w+) (\\d+)$", re.MULTILINE)
"""A line of node:test's spec reporter summary: an information sign, `pass 12`."""


def summary(output: str) -> dict[str, int]:
    """The counts of node:test's spec reporter summary (tests, pass, fail, todo, ...)."""
    return {m[1]: int(m[2]) for m in SUMMARY.finditer(output)}


async def run_suite(node: str, env: dict[str, str]) -> tuple[int, str]:
    """Run `node --test` in tests/js; return its exit code and combined output."""
    proc = await asyncio.create_subprocess_exec(
        node,
        "--test",
        "--test-concurrency=1",
        "--test-reporter=spec",
        cwd=JS_DIR,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), SUITE_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        out, _ = await proc.communicate()
        pytest.fail(f"node --test ran over {SUITE_TIMEOUT_S:.0f}s:\n{out.decode(errors='replace')}")
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def rows(pool: DbPool, query: str, *params: Any) -> list[dict[str, Any]]:
    async with pool.connection() as conn:
        cur = await conn.execute(query, params)
        return list(await cur.fetchall())


async def settled_runs(pool: DbPool, tenants: list[str]) -> list[dict[str, Any]]:
    """The tenants' runs once none is pending or running (or the deadline passed)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        found = await rows(
            pool, "SELECT run_id, status FROM runs WHERE tenant_id = ANY(%s)", tenants
        )
        if time.monotonic() > deadline or all(
            r["status"] not in ("pending", "running") for r in found
        ):
            return found
        await asyncio.sleep(0.25)


async def test_js_sdk_suite(
    node: str,
    server: RunningServer,
    mock_llm: MockLLM,
    db_pool: DbPool,
    orders: PgOrderStore,  # the demo orders, no refunds yet: the suite may refund any of them
    tmp_path: Path,
) -> None:
    tenant, other = f"t-js-{uuid.uuid4().hex[:8]}", f"t-js-other-{uuid.uuid4().hex[:8]}"
    report = tmp_path / "report.jsonl"
    report.touch()
    env = {
        **os.environ,
        "STEWARD_URL": server.url,
        "STEWARD_MOCK_LLM_URL": mock_llm.root_url,
        "STEWARD_KEY_USER": await server.keys("pat", tenant, "user"),
        "STEWARD_KEY_PEER": await server.keys("sam", tenant, "user"),
        "STEWARD_KEY_APPROVER": await server.keys("mia", tenant, "approver"),
        "STEWARD_KEY_ADMIN": await server.keys("ada", tenant, "admin"),
        "STEWARD_KEY_OTHER": await server.keys("eve", other, "user"),
        "STEWARD_KEY_OTHER_APPROVER": await server.keys("mia", other, "approver"),
        "STEWARD_JS_REPORT": str(report),
        "NODE_NO_WARNINGS": "1",
    }
    await mock_llm.clear_faults()
    code, output = await run_suite(node, env)
    counts = summary(output)
    assert code == 0, (
        f"node --test exited {code}:\n{output}\n--- server log ---\n{server.log()[-6000:]}"
    )
    assert counts.get("fail") == 0 and counts.get("pass", 0) > 0, output
    print(f"JS SDK suite: {counts}")  # shown with -s or -rA

    # ------------------------------------------------------------- the database agrees
    outcomes = [json.loads(line) for line in report.read_text().splitlines() if line]
    held = {o["thread_id"]: o for o in outcomes if o["kind"] == "refund"}
    decisions = {o["decision"] for o in held.values()}
    assert decisions >= {"approved", "edited", "rejected", "resolved", "pending"}, held

    approvals = await rows(
        db_pool,
        "SELECT approval_id, thread_id::text AS thread_id, status, decided_by, requester_id"
        " FROM approvals WHERE tenant_id = %s",
        tenant,
    )
    assert {a["thread_id"] for a in approvals} == set(held), "every approval is one the suite held"
    refunds = await rows(
        db_pool,
        "SELECT r.thread_id, r.order_id, r.amount_cents, r.approved_by, r.approval_id"
        " FROM refunds r JOIN threads t ON t.thread_id::text = r.thread_id"
        " WHERE t.tenant_id = ANY(%s)",
        [tenant, other],
    )
    for approval in approvals:
        outcome = held[approval["thread_id"]]
        mine = [r for r in refunds if r["thread_id"] == approval["thread_id"]]
        assert approval["requester_id"] == "pat"
        if outcome["decision"] in ("approved", "edited"):
            assert approval["status"] == outcome["decision"] and approval["decided_by"] == "mia"
            [refund] = mine  # exactly one, however often the resume was retried
            assert refund["order_id"] == outcome["order_id"]
            assert refund["amount_cents"] == outcome["amount_cents"]
            assert refund["approved_by"] == "mia"
            assert refund["approval_id"] == approval["approval_id"]
        elif outcome["decision"] == "pending":
            assert approval["status"] == "pending" and approval["decided_by"] is None
            assert mine == []
        else:  # rejected, or marked as resolved (a rejection without a message)
            assert approval["status"] == "rejected" and approval["decided_by"] == "mia"
            assert mine == []
    approved = {t for t, o in held.items() if o["decision"] in ("approved", "edited")}
    assert {r["thread_id"] for r in refunds} == approved, "no refund outside the approved threads"

    runs = await settled_runs(db_pool, [tenant, other])
    assert runs, "the suite's runs are recorded"
    active = [r for r in runs if r["status"] in ("pending", "running")]
    assert not active, f"runs left active after the suite: {active}"
