"""`GET /usage`: LLM usage and budgets from the usage ledger.

- Every role: the caller's own usage in their tenant for the period, per model, and their
  budgets (user per day, tenant per month) with what is spent and what remains.
- `admin`: the whole tenant (their own: `tenant=` may only name it), per user and model;
  `user=` narrows it to one user. Nobody sees another tenant's usage.
Money is given as decimal strings (USD), tokens as integers.
"""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from litestar import get
from litestar.params import QueryParameter

from core.budget.budgets import Payer
from core.budget.ledger import PgUsageLedger
from core.errors import Forbidden
from server.auth import PrincipalDep
from server.openapi import api_errors
from server.routes.deps import RuntimeDep

Period = Literal["day", "month"]


def period_bounds(period: Period, now: datetime) -> tuple[datetime, datetime]:
    """The current UTC day or calendar month as [since, until)."""
    if period == "day":
        since = now.replace(hour=0, minute=0, second=0, microsecond=0)
        return since, since + timedelta(days=1)
    since = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    until = (since + timedelta(days=32)).replace(day=1)
    return since, until


def _money(value: Any) -> str:
    return format(Decimal(value).normalize(), "f") if value is not None else "0"


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {
        **({"user_id": row["user_id"]} if "user_id" in row else {}),
        "model": row["model"],
        "calls": int(row["calls"]),
        "input_tokens": int(row["input_tokens"]),
        "output_tokens": int(row["output_tokens"]),
        "cost_usd": _money(row["cost_usd"]),
        "reserved_usd": _money(row["reserved_usd"]),
    }


@get(
    "/usage",
    operation_id="GetUsage",
    tags=["usage"],
    summary="LLM usage and budgets",
    responses=api_errors(403),
)
async def get_usage(
    principal: PrincipalDep,
    runtime: RuntimeDep,
    period: Annotated[Period, QueryParameter(description="`day` or `month` (UTC).")] = "month",
    tenant: Annotated[
        str | None,
        QueryParameter(description="Admins: their own tenant (another tenant is refused)."),
    ] = None,
    user: Annotated[
        str | None, QueryParameter(description="Admins: only this user of the tenant.")
    ] = None,
) -> dict[str, Any]:
    """Return the caller's usage, or (admins) a tenant's usage per user."""
    if (tenant is not None or user is not None) and not principal.is_admin:
        raise Forbidden("only admins may see other users' or tenants' usage")
    if tenant not in (None, principal.tenant_id):
        raise Forbidden("usage is shown for your own tenant only")
    admin_view = principal.is_admin and user is None
    tenant_id = tenant or principal.tenant_id
    user_id = None if admin_view else (user or principal.user_id)
    ledger = PgUsageLedger(runtime.pool, runtime.deps.settings)
    since, until = period_bounds(period, datetime.now(UTC))
    rows = await ledger.summary(
        tenant_id=tenant_id, user_id=user_id, since=since, until=until, by_user=admin_view
    )
    spend = await ledger.spend(
        Payer(
            tenant_id=tenant_id, user_id=user_id or principal.user_id, thread_id=None, run_id=None
        )
    )
    budgets = {
        s.scope: {
            "limit_usd": _money(s.limit_usd) if s.limit_usd is not None else None,
            "spent_usd": _money(s.spent_usd),
            "remaining_usd": _money(s.remaining_usd) if s.remaining_usd is not None else None,
        }
        for s in spend
        if s.scope != "thread" and not (admin_view and s.scope == "user_day")
    }
    return {
        "scope": "tenant" if admin_view else "user",
        "tenant_id": tenant_id,
        "user_id": user_id,
        "period": period,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "totals": {
            "calls": sum(int(r["calls"]) for r in rows),
            "input_tokens": sum(int(r["input_tokens"]) for r in rows),
            "output_tokens": sum(int(r["output_tokens"]) for r in rows),
            "cost_usd": _money(sum((Decimal(r["cost_usd"]) for r in rows), Decimal(0))),
        },
        "by_model": [_row(r) for r in rows] if not admin_view else [],
        "by_user": [_row(r) for r in rows] if admin_view else [],
        "budgets": budgets,
    }


ROUTES = [get_usage]

__all__ = ["ROUTES", "get_usage", "period_bounds"]
