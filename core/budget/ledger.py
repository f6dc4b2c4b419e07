"""The usage ledger in Postgres: reserve before a model call, settle after it.

`reserve` runs one transaction that takes a transaction-scoped advisory lock per limited scope
(thread, then user-day, then tenant-month: always this order, so no deadlocks), sums the
scope's spend (settled costs plus reservations younger than the TTL) and inserts the
reservation only if every scope stays within its limit. Concurrent calls of one user therefore
serialise on the lock and can never together reserve more than the budget; the only overspend
possible is a call whose actual usage exceeds its own reservation (prompt under-estimated),
i.e. at most one call's estimate. Money is `numeric`, never float.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

from core.budget.budgets import BudgetLimits, Payer, Reservation, Scope, ScopeSpend
from core.budget.estimates import CallEstimate
from core.settings import Settings

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import DictRow

    from core.db.pool import DbPool

log = logging.getLogger(__name__)

LOCK_SEED = 7_301_559_005
"""Seed of `hashtextextended` for the budget advisory-lock keys."""

_LIVE_COST = """
    CASE status
        WHEN 'settled' THEN cost_usd
        WHEN 'reserved' THEN CASE WHEN created_at > now() - make_interval(secs => %(ttl)s)
                                  THEN reserved_usd ELSE 0 END
        ELSE 0
    END
"""

_SPEND = f"""
    WITH windows AS (
        SELECT date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS day_start,
               date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS month_start
    ), rows AS (
        SELECT l.tenant_id, l.user_id, l.thread_id, l.created_at, {_LIVE_COST} AS usd
        FROM usage_ledger l, windows w
        WHERE (l.tenant_id = %(tenant)s AND l.created_at >= w.month_start)
           OR (%(thread)s::text IS NOT NULL AND l.thread_id = %(thread)s::text)
    )
    SELECT
        COALESCE(sum(usd) FILTER (WHERE tenant_id = %(tenant)s AND user_id = %(user)s
                                  AND created_at >= w.day_start), 0) AS user_day,
        COALESCE(sum(usd) FILTER (WHERE tenant_id = %(tenant)s
                                  AND created_at >= w.month_start), 0) AS tenant_month,
        COALESCE(sum(usd) FILTER (WHERE %(thread)s::text IS NOT NULL
                                  AND thread_id = %(thread)s::text), 0) AS thread
    FROM rows, windows w
"""  # noqa: S608  # constant fragments; values are bound

_INSERT = """
    INSERT INTO usage_ledger (run_id, thread_id, user_id, tenant_id, model, route,
                              estimated_input_tokens, max_output_tokens, reserved_usd)
    VALUES (%(run)s, %(thread)s, %(user)s, %(tenant)s, %(model)s, %(route)s,
            %(input)s, %(max_output)s, %(usd)s)
    RETURNING call_id
"""

_SETTLE = """
    UPDATE usage_ledger
    SET status = 'settled', input_tokens = %(input)s, output_tokens = %(output)s,
        cached_input_tokens = %(cached)s, cost_usd = %(usd)s, usage_source = %(source)s,
        settled_at = now()
    WHERE call_id = %(call_id)s AND status = 'reserved'
"""

_RELEASE = """
    UPDATE usage_ledger SET status = 'released', cost_usd = 0, settled_at = now()
    WHERE call_id = %(call_id)s AND status = 'reserved'
"""

_SUMMARY = """
    SELECT {group} model, count(*) FILTER (WHERE status = 'settled') AS calls,
           COALESCE(sum(input_tokens), 0)::bigint AS input_tokens,
           COALESCE(sum(output_tokens), 0)::bigint AS output_tokens,
           COALESCE(sum(cost_usd) FILTER (WHERE status = 'settled'), 0) AS cost_usd,
           COALESCE(sum(reserved_usd) FILTER (WHERE status = 'reserved'), 0) AS reserved_usd
    FROM usage_ledger
    WHERE tenant_id = %(tenant)s
      AND (%(user)s::text IS NULL OR user_id = %(user)s::text)
      AND created_at >= %(since)s AND created_at < %(until)s
    GROUP BY {group} model
    ORDER BY {group} model
"""

_ORDER: tuple[Scope, ...] = ("thread", "user_day", "tenant_month")


def _lock_key(scope: Scope, payer: Payer) -> str:
    if scope == "thread":
        return f"usage:thread:{payer.thread_id}"
    if scope == "user_day":
        return f"usage:user:{payer.tenant_id}:{payer.user_id}"
    return f"usage:tenant:{payer.tenant_id}"


class UsageLedger(Protocol):
    """What the agent node needs: reserve before a call, settle or release after it."""

    async def reserve(
        self, payer: Payer, estimate: CallEstimate, *, route: str | None
    ) -> Reservation:
        """Reserve the estimate if every budget allows it."""
        ...

    async def settle(
        self,
        call_id: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int,
        cost_usd: Decimal,
        source: Literal["provider", "estimate"],
    ) -> None:
        """Record the call's actual usage and cost."""
        ...

    async def release(self, call_id: str) -> None:
        """Drop a reservation whose call failed (no cost)."""
        ...


class PgUsageLedger:
    """The ledger and budgets on the service's Postgres pool."""

    def __init__(self, pool: DbPool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    @property
    def limits(self) -> BudgetLimits:
        """The configured limits."""
        return BudgetLimits.from_settings(self._settings)

    async def _spend(self, conn: AsyncConnection[DictRow], payer: Payer) -> dict[Scope, Decimal]:
        row = await (
            await conn.execute(
                _SPEND,
                {
                    "tenant": payer.tenant_id,
                    "user": payer.user_id,
                    "thread": payer.thread_id,
                    "ttl": self._settings.budget_reservation_ttl_s,
                },
            )
        ).fetchone()
        assert row is not None
        return {
            "user_day": row["user_day"],
            "tenant_month": row["tenant_month"],
            "thread": row["thread"],
        }

    async def reserve(
        self, payer: Payer, estimate: CallEstimate, *, route: str | None
    ) -> Reservation:
        """Reserve `estimate.usd` for one call unless a budget would be exceeded."""
        limits = self.limits
        scopes = [
            s
            for s in _ORDER
            if limits.of(s) is not None and (s != "thread" or payer.thread_id is not None)
        ]
        async with self._pool.connection() as conn, conn.transaction():
            for scope in scopes:
                await conn.execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended(%s, %s))",
                    (_lock_key(scope, payer), LOCK_SEED),
                )
            spent = await self._spend(conn, payer)
            spend = tuple(ScopeSpend(s, spent[s], limits.of(s)) for s in _ORDER)
            for scope in scopes:
                limit = limits.of(scope)
                if limit is not None and spent[scope] + estimate.usd > limit:
                    log.info(
                        "model call refused by budget",
                        extra={
                            "reason_code": "budget_exceeded",
                            "scope": scope,
                            "spent_usd": str(spent[scope]),
                            "limit_usd": str(limit),
                            "estimate_usd": str(estimate.usd),
                        },
                    )
                    return Reservation(call_id=None, exceeded=scope, spend=spend)
            row = await (
                await conn.execute(
                    _INSERT,
                    {
                        "run": payer.run_id,
                        "thread": payer.thread_id,
                        "user": payer.user_id,
                        "tenant": payer.tenant_id,
                        "model": estimate.model,
                        "route": route,
                        "input": estimate.input_tokens,
                        "max_output": estimate.max_output_tokens,
                        "usd": estimate.usd,
                    },
                )
            ).fetchone()
        assert row is not None
        return Reservation(call_id=str(row["call_id"]), exceeded=None, spend=spend)

    async def settle(
        self,
        call_id: str,
        *,
        input_tokens: int,
        output_tokens: int,
        cached_input_tokens: int,
        cost_usd: Decimal,
        source: Literal["provider", "estimate"],
    ) -> None:
        """Replace the reservation with the call's actual usage and cost."""
        async with self._pool.connection() as conn:
            await conn.execute(
                _SETTLE,
                {
                    "call_id": call_id,
                    "input": input_tokens,
                    "output": output_tokens,
                    "cached": cached_input_tokens,
                    "usd": cost_usd,
                    "source": source,
                },
            )

    async def release(self, call_id: str) -> None:
        """The call failed: it costs nothing and stops counting."""
        async with self._pool.connection() as conn:
            await conn.execute(_RELEASE, {"call_id": call_id})

    async def spend(self, payer: Payer) -> tuple[ScopeSpend, ...]:
        """Current spend and limit of every scope for this payer."""
        limits = self.limits
        async with self._pool.connection() as conn:
            spent = await self._spend(conn, payer)
        return tuple(ScopeSpend(s, spent[s], limits.of(s)) for s in _ORDER)

    async def summary(
        self,
        *,
        tenant_id: str,
        user_id: str | None,
        since: datetime,
        until: datetime,
        by_user: bool = False,
    ) -> list[dict[str, Any]]:
        """Settled usage per model (and per user when `by_user`) in [since, until)."""
        query = _SUMMARY.format(group="user_id," if by_user else "")
        async with self._pool.connection() as conn:
            rows = await (
                await conn.execute(
                    query,
                    {
                        "tenant": tenant_id,
                        "user": user_id,
                        "since": since,
                        "until": until,
                    },
                )
            ).fetchall()
        return [dict(row) for row in rows]


__all__ = ["LOCK_SEED", "PgUsageLedger", "UsageLedger"]
