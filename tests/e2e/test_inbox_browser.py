"""The approval inbox (`/inbox`) in headless Chromium, against the real `steward serve`.

Refunds over the threshold are requested through the HTTP API (the LangGraph SDK, as a
client would), so each holds a real pending approval; a browser then signs in with an API key
and works the queue: approve one, edit one, reject one with a comment. Afterwards the
database must show exactly those effects: one refund for the approved, one with the edited
amount, none for the rejected. A second test checks that the pages refuse what the API
refuses: a user's key, an approver's own request (four eyes), another tenant's approval
(404), a POST without the session's CSRF token, a signed-out session.

The browser is Debian's chromium (`/usr/bin/chromium`, or `STEWARD_CHROMIUM`) driven by
Playwright for Python; Playwright never downloads a browser here. Without it the tests skip,
unless `CI=true`, where they fail. Screenshots go to `$STEWARD_TEST_ARTIFACTS/inbox/` (default
`tests/artifacts/inbox/`, git-ignored); their paths are printed.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import pytest_asyncio

from core.db.pool import DbPool
from core.domain.orders import PgOrderStore
from server.inbox.sessions import token_hash
from tests.serve_helpers import until

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("STEWARD_CHROMIUM", "/usr/bin/chromium"))
UI_TIMEOUT_MS = 30_000
"""Playwright's auto-waiting limit for every action and expectation (a loaded 2-core box)."""


def _browser_missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the Python package playwright is not installed (make install)"
    if not CHROMIUM.exists():
        return f"no Chromium at {CHROMIUM} (apt-get install chromium, or set STEWARD_CHROMIUM)"
    return None


@pytest.fixture(scope="session", name="chromium")
def fx_chromium() -> Path:
    """The system Chromium; checked before the server starts, so a skip costs nothing.

    Skips when Playwright or the browser is missing, except under `CI=true`: there it fails.
    """
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the browser tests cannot run: {missing}")
        pytest.skip(f"browser tests need Chromium and Playwright: {missing}")
    return CHROMIUM


@pytest_asyncio.fixture(scope="module", loop_scope="session", name="browser")
async def fx_browser(chromium: Path) -> AsyncIterator[Browser]:
    """Headless Chromium from the system, for this module."""
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=UI_TIMEOUT_MS)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(chromium), headless=True)
        try:
            yield browser
        finally:
            await browser.close()


class Shots:
    """Screenshots of a test, written where the run keeps its artifacts."""

    def __init__(self, prefix: str) -> None:
        base = Path(os.environ.get("STEWARD_TEST_ARTIFACTS", ROOT / "tests" / "artifacts"))
        self.dir = base / "inbox"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prefix = prefix
        self.paths: list[Path] = []

    async def take(self, page: Page, name: str) -> None:
        path = self.dir / f"{self.prefix}-{len(self.paths) + 1:02d}-{name}.png"
        await page.screenshot(path=str(path), full_page=True)
        self.paths.append(path)
        print(f"screenshot: {path}")


async def new_page(browser: Browser, server: RunningServer) -> tuple[BrowserContext, Page]:
    context = await browser.new_context(
        base_url=server.url, viewport={"width": 1200, "height": 900}
    )
    context.set_default_timeout(UI_TIMEOUT_MS)
    return context, await context.new_page()


async def sign_in(page: Page, key: str) -> None:
    await page.goto("/inbox/login")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()


async def held_refund(server: RunningServer, key: str, text: str) -> str:
    """Ask for a refund over the threshold through the API; return the waiting thread's id."""
    client = server.client(key)
    tid: str = (await client.threads.create())["thread_id"]
    request: Any = {"messages": [{"role": "user", "content": text}]}
    out: Any = await client.runs.wait(tid, "agent", input=request)
    assert out["__interrupt__"][0]["value"]["action_requests"][0]["name"] == "issue_refund"
    return tid


async def approval_row(db_pool: DbPool, tid: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        async with db_pool.connection() as conn:
            cur = await conn.execute(
                "SELECT approval_id, status, decided_by, decider_role, comment, requester_id,"
                " resume_run_id FROM approvals WHERE thread_id = %s",
                (uuid.UUID(tid),),
            )
            row = await cur.fetchone()
        return dict(row) if row else None

    row = await until(probe, lambda r: r is not None, within=30, what=f"approval of {tid}")
    assert row is not None
    return row


async def refunds_of(db_pool: DbPool, tids: list[str]) -> list[dict[str, Any]]:
    async with db_pool.connection() as conn:
        cur = await conn.execute(
            "SELECT thread_id, order_id, amount_cents, approval_id, approved_by FROM refunds"
            " WHERE thread_id = ANY(%s) ORDER BY order_id",
            (tids,),
        )
        return [dict(r) for r in await cur.fetchall()]


async def test_approver_approves_edits_and_rejects_in_the_browser(
    chromium: Path,
    server: RunningServer,
    browser: Browser,
    db_pool: DbPool,
    orders: PgOrderStore,
    mock_llm_clean: Any,
) -> None:
    from playwright.async_api import expect

    tenant = f"t-{uuid.uuid4().hex[:8]}"
    alice = await server.keys("alice", tenant, "user")
    paula = await server.keys("paula", tenant, "approver")
    t_approve, t_edit, t_reject = await asyncio.gather(
        held_refund(server, alice, "Refund $700 on LS-10017 please."),
        held_refund(server, alice, "Refund $700 on LS-10024 please."),
        held_refund(server, alice, "Refund $700 on LS-10013 please."),
    )
    a_approve, a_edit, a_reject = [
        str((await approval_row(db_pool, t))["approval_id"]) for t in (t_approve, t_edit, t_reject)
    ]
    shots = Shots("decide")
    context, page = await new_page(browser, server)
    elsewhere: list[str] = []
    console_errors: list[str] = []
    page.on(
        "request",
        lambda r: None if r.url.startswith(server.url) else elsewhere.append(r.url),
    )
    failed: list[str] = []
    page.on("response", lambda r: failed.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)
    try:
        await sign_in(page, paula)
        await expect(
            page.get_by_role("heading", name=re.compile("Waiting for a decision"))
        ).to_be_visible()
        cookies = {c["name"]: c for c in await context.cookies()}
        session = cookies["steward_inbox"]
        assert session["httpOnly"] and session["sameSite"] == "Strict"
        assert session["path"] == "/inbox"
        assert all(paula not in c["value"] for c in cookies.values())

        pending = page.locator("#pending tbody tr")
        for aid, order in ((a_approve, "LS-10017"), (a_edit, "LS-10024"), (a_reject, "LS-10013")):
            row = page.locator(f'#pending tr[data-approval-id="{aid}"]')
            await expect(row).to_contain_text(order)
            await expect(row).to_contain_text("$700")
            await expect(row).to_contain_text("alice")
            await expect(row.locator("td.age")).not_to_be_empty()
        await expect(pending).to_have_count(3)
        await shots.take(page, "queue")

        # Approve: the detail shows what an approver needs before deciding.
        await (
            page.locator(f'#pending tr[data-approval-id="{a_approve}"]').get_by_role("link").click()
        )
        article = page.locator("#approval")
        await expect(article).to_have_attribute("data-status", "pending")
        await expect(article.locator(".requester")).to_have_text("alice")
        await expect(article.locator('table.order[data-order-id="LS-10017"]')).to_contain_text(
            "Balance"
        )
        await expect(article.locator(".conversation")).to_contain_text(
            "Refund $700 on LS-10017 please."
        )
        await expect(article.locator(".citations li").first).to_be_visible()
        await shots.take(page, "detail")
        await page.get_by_label("Comment (optional)").first.fill("VIP customer, approved")
        await page.get_by_role("button", name="Approve", exact=True).click()
        await expect(article).to_have_attribute("data-status", "approved")
        await expect(page.locator("#flash")).to_contain_text("Approved.")
        await expect(article.locator(".decision-record .decider")).to_have_text("paula (approver)")
        await shots.take(page, "approved")

        # Edit: an amount the API refuses is shown as a message and changes nothing.
        await page.goto(f"/inbox/approvals/{a_edit}")
        await page.get_by_label("Amount").fill("12.345")
        await page.get_by_role("button", name="Approve edited refund").click()
        await expect(page.locator("#flash .error")).to_contain_text("edited_action.args")
        await expect(article).to_have_attribute("data-status", "pending")
        await shots.take(page, "edit-refused")
        await page.get_by_label("Amount").fill("650.00")
        await page.get_by_role("button", name="Approve edited refund").click()
        await expect(article).to_have_attribute("data-status", "edited")
        await expect(article.locator(".released")).to_have_text("$650.00")
        await shots.take(page, "edited")

        # Reject with a comment.
        await page.goto(f"/inbox/approvals/{a_reject}")
        await page.get_by_label("Comment for the requester").fill("Outside the refund window")
        await page.get_by_role("button", name="Reject").click()
        await expect(article).to_have_attribute("data-status", "rejected")
        await expect(article.locator(".decision-record .comment")).to_have_text(
            "Outside the refund window"
        )
        await shots.take(page, "rejected")

        # The queue: nothing of ours waits; the decided list says who decided, and when.
        await page.get_by_role("link", name="Back to the queue").click()
        await expect(page.locator("#pending tbody tr")).to_have_count(0)
        for aid, label in (
            (a_approve, "Approved"),
            (a_edit, "Approved with edits"),
            (a_reject, "Rejected"),
        ):
            row = page.locator(f'#decided tr[data-approval-id="{aid}"]')
            await expect(row.locator(".status")).to_have_text(label)
            await expect(row.locator(".decider")).to_have_text("paula (approver)")
            await expect(row).to_contain_text(" UTC")
        await shots.take(page, "decided")
        # Everything came from Steward (no CDN) and the CSP blocked nothing htmx needed; the
        # only console errors are the 422 the refused edit answered.
        assert elsewhere == []
        assert all("422" in e for e in console_errors), (console_errors, failed)
        assert await page.evaluate("typeof htmx === 'object' && htmx.version") == "2.0.11"
    finally:
        await context.close()
        print("inbox screenshots:", *map(str, shots.paths), sep="\n  ")

    # The database: each decision recorded once, the resumes done, exactly the decided refunds.
    rows = {
        aid: await approval_row(db_pool, t)
        for aid, t in zip((a_approve, a_edit, a_reject), (t_approve, t_edit, t_reject), strict=True)
    }
    assert {a: (r["status"], r["decided_by"], r["decider_role"]) for a, r in rows.items()} == {
        a_approve: ("approved", "paula", "approver"),
        a_edit: ("edited", "paula", "approver"),
        a_reject: ("rejected", "paula", "approver"),
    }
    assert rows[a_reject]["comment"] == "Outside the refund window"
    client = server.client(alice)
    for tid, aid in ((t_approve, a_approve), (t_edit, a_edit), (t_reject, a_reject)):
        await client.runs.join(tid, str(rows[aid]["resume_run_id"]))
    refunds = await refunds_of(db_pool, [t_approve, t_edit, t_reject])
    assert [(r["order_id"], r["amount_cents"], str(r["approval_id"])) for r in refunds] == [
        ("LS-10017", 70_000, a_approve),
        ("LS-10024", 65_000, a_edit),
    ]
    assert await orders.list_refunds("LS-10013") == []


async def test_inbox_refuses_what_the_api_refuses(
    chromium: Path,
    server: RunningServer,
    browser: Browser,
    db_pool: DbPool,
    orders: PgOrderStore,
    mock_llm_clean: Any,
) -> None:
    from playwright.async_api import expect

    tenant = f"t-{uuid.uuid4().hex[:8]}"
    alice = await server.keys("alice", tenant, "user")
    arno = await server.keys("arno", tenant, "approver")
    olga = await server.keys("olga", f"other-{tenant}", "user")
    t_own, t_foreign = await asyncio.gather(
        held_refund(server, arno, "Refund $650 on LS-10007 please."),
        held_refund(server, olga, "Refund $600 on LS-10005 please."),
    )
    a_own = str((await approval_row(db_pool, t_own))["approval_id"])
    a_foreign = str((await approval_row(db_pool, t_foreign))["approval_id"])
    shots = Shots("refuse")
    context, page = await new_page(browser, server)
    flash = page.locator("#flash")
    try:
        # Signed out: the pages send the browser to sign in; bad keys and users are refused.
        await page.goto("/inbox")
        await expect(page).to_have_url(re.compile(r"/inbox/login$"))
        await sign_in(page, "stw_00000000_" + "x" * 32)
        await expect(flash).to_contain_text("not valid")
        await sign_in(page, alice)
        await expect(flash).to_contain_text("only approvers and admins")
        await shots.take(page, "user-key")
        assert "steward_inbox" not in {c["name"] for c in await context.cookies()}

        # Four eyes: arno asked for this refund, so arno may not approve it.
        await sign_in(page, arno)
        await page.goto(f"/inbox/approvals/{a_own}")
        article = page.locator("#approval")
        await expect(article.locator(".notice")).to_contain_text("You asked for this action")
        await page.get_by_role("button", name="Approve", exact=True).click()
        await expect(flash.locator(".error")).to_contain_text("four eyes")
        await expect(article).to_have_attribute("data-status", "pending")
        await shots.take(page, "four-eyes")

        # Another tenant's approval does not exist for arno, on the page and for a POST.
        response = await page.goto(f"/inbox/approvals/{a_foreign}")
        assert response is not None and response.status == 404
        await expect(flash).to_contain_text(f"approval {a_foreign} not found")
        await shots.take(page, "other-tenant")
        [token] = [c["value"] for c in await context.cookies() if c["name"] == "steward_inbox"]
        async with db_pool.connection() as conn:
            cur = await conn.execute(
                "SELECT csrf_token FROM inbox_sessions WHERE session_hash = %s",
                (token_hash(token),),
            )
            row = await cur.fetchone()
        assert row is not None
        csrf = row["csrf_token"]
        foreign = await page.request.post(
            f"/inbox/approvals/{a_foreign}/decision",
            form={"type": "reject", "comment": "x", "csrf_token": csrf},
        )
        assert foreign.status == 404

        # CSRF: the session cookie alone decides nothing.
        forms: list[dict[str, str | float | bool]] = [
            {"type": "reject"},
            {"type": "reject", "csrf_token": "forged"},
        ]
        for form in forms:
            forged = await page.request.post(f"/inbox/approvals/{a_own}/decision", form=form)
            assert forged.status == 403
            assert "security token" in await forged.text()

        # Sign out ends the session in the database: the old cookie signs nobody in.
        await page.goto("/inbox")
        await page.get_by_role("button", name="Sign out").click()
        await expect(page).to_have_url(re.compile(r"/inbox/login$"))
        async with db_pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM inbox_sessions WHERE session_hash = %s", (token_hash(token),)
            )
            assert await cur.fetchone() is None
        await context.add_cookies(
            [{"name": "steward_inbox", "value": token, "url": f"{server.url}/inbox"}]
        )
        await page.goto("/inbox")
        await expect(page).to_have_url(re.compile(r"/inbox/login$"))
    finally:
        await context.close()
        print("inbox screenshots:", *map(str, shots.paths), sep="\n  ")

    for tid in (t_own, t_foreign):
        row = await approval_row(db_pool, tid)
        assert (row["status"], row["decided_by"], row["resume_run_id"]) == ("pending", None, None)
    assert await refunds_of(db_pool, [t_own, t_foreign]) == []


async def test_the_forms_work_without_javascript(
    chromium: Path,
    server: RunningServer,
    browser: Browser,
    db_pool: DbPool,
    orders: PgOrderStore,
    mock_llm_clean: Any,
) -> None:
    from playwright.async_api import expect

    tenant = f"t-{uuid.uuid4().hex[:8]}"
    alice = await server.keys("alice", tenant, "user")
    ada = await server.keys("ada", tenant, "admin")
    tid = await held_refund(server, alice, "Refund $700 on LS-10017 please.")
    aid = str((await approval_row(db_pool, tid))["approval_id"])
    shots = Shots("nojs")
    context = await browser.new_context(base_url=server.url, java_script_enabled=False)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = await context.new_page()
    try:
        await sign_in(page, ada)
        await page.locator(f'#pending tr[data-approval-id="{aid}"]').get_by_role("link").click()
        await page.get_by_label("Comment for the requester").fill("Duplicate request")
        await page.get_by_role("button", name="Reject").click()
        # A plain form post: the decision, then a redirect to the decided approval.
        await expect(page).to_have_url(re.compile(rf"/inbox/approvals/{aid}\?done=rejected$"))
        await expect(page.locator("#flash")).to_contain_text("Rejected.")
        await expect(page.locator("#approval")).to_have_attribute("data-status", "rejected")
        await expect(page.locator(".decision-record .decider")).to_have_text("ada (admin)")
        await shots.take(page, "rejected")
    finally:
        await context.close()
        print("inbox screenshots:", *map(str, shots.paths), sep="\n  ")

    row = await approval_row(db_pool, tid)
    assert (row["status"], row["decided_by"], row["comment"]) == (
        "rejected",
        "ada",
        "Duplicate request",
    )
    await server.client(alice).runs.join(tid, str(row["resume_run_id"]))
    assert await refunds_of(db_pool, [tid]) == []
