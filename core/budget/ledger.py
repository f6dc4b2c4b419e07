"""The usage ledger in Postgres: reserve before a model call, settle after it.

Spend is kept in counters, one row per scope and window (`budget_counters`: a user's UTC day,
a tenant's UTC month, a thread), next to one ledger row per call (the audit). `reserve` is
one statement in autocommit (the `budget_reserve` function, migration 0012): it locks the
call's counters, compares each limit with the latest spend (`spent + reserved + estimate <=
limit`) and, only when all fit, adds the estimate to them and inserts the ledger row.
Concurrent calls therefore never together reserve more than a budget; the only overspend
possible is a call whose actual usage exceeds its own reservation (prompt under-estimated),
i.e. at most one call's estimate.
`settle` and `release` update the ledger row and its counters in one statement. No advisory
lock, no sum over the ledger: 1 + 1 round trips per call whatever the ledger holds. Money is
`numeric`, never float.

A reservation never settled (its process died) stops counting after
`STEWARD_BUDGET_RESERVATION_TTL_S` (its row's `held_until`): `sweep` marks it expired and
takes it off its counters. It runs before a reservation is refused (which is then tried once
more) and when `spend` finds such a reservation in the payer's scopes, so no answer counts
one.
"""

from __future__ import annotations

import logging
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

from core.budget import ledger_sql
from core.budget.budgets import BudgetLimits, Payer, Reservation, Scope, ScopeSpend
from core.budget.estimates import CallEstimate
from core.settings import Settings

if TYPE_CHECKING:
    from psycopg.rows import DictRow

    from core.db.pool import DbPool

log = logging.getLogger(__name__)

_ORDER: tuple[Scope, ...] = ("thread", "user_day", "tenant_month")
"""Scopes in the order a refusal names them (the first one exceeded)."""


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

    def _scope_params(self, payer: Payer) -> dict[str, Any]:
        limits = self.limits
        return {
            "tenant": payer.tenant_id,
            "user": payer.user_id,
            "thread": payer.thread_id,
            "user_day_limit": limits.user_day,
            "tenant_month_limit": limits.tenant_month,
            "thread_limit": limits.thread,
        }

    def _spend_of(self, rows: list[DictRow]) -> tuple[ScopeSpend, ...]:
        spent: dict[str, Decimal] = {row["scope"]: row["usd"] for row in rows}
        limits = self.limits
        return tuple(ScopeSpend(s, spent.get(s, Decimal(0)), limits.of(s)) for s in _ORDER)

    async def _try_reserve(self, params: dict[str, Any]) -> tuple[list[DictRow], str | None]:
        """One attempt: (spend rows before the call, the ledger row when granted).

        One statement in autocommit (`budget_reserve`): no transaction is left open across a
        round trip, so the tenant's counter row is locked only while the server decides.
        """
        async with self._pool.connection() as conn:
            rows = await (await conn.execute(ledger_sql.RESERVE, params)).fetchall()
        call_id = rows[0]["call_id"] if rows else None
        return rows, str(call_id) if call_id is not None else None

    async def reserve(
        self, payer: Payer, estimate: CallEstimate, *, route: str | None
    ) -> Reservation:
        """Reserve `estimate.usd` for one call unless a budget would be exceeded."""
        params = {
            **self._scope_params(payer),
            "run": payer.run_id,
            "model": estimate.model,
            "route": route,
            "input": estimate.input_tokens,
            "max_output": estimate.max_output_tokens,
            "usd": estimate.usd,
            "ttl": self._settings.budget_reservation_ttl_s,
        }
        rows, call_id = await self._try_reserve(params)
        if call_id is None and await self.sweep():
            rows, call_id = await self._try_reserve(params)
        spend = self._spend_of(rows)
        if call_id is not None:
            return Reservation(call_id=call_id, exceeded=None, spend=spend)
        refused = {row["scope"] for row in rows if not row["granted"]}
        exceeded = next(s.scope for s in spend if s.scope in refused)
        scope = next(s for s in spend if s.scope == exceeded)
        log.info(
            "model call refused by budget",
            extra={
                "reason_code": "budget_exceeded",
                "scope": exceeded,
                "spent_usd": str(scope.spent_usd),
                "limit_usd": str(scope.limit_usd),
                "estimate_usd": str(estimate.usd),
            },
        )
        return Reservation(call_id=None, exceeded=exceeded, spend=spend)

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
                ledger_sql.SETTLE,
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
            await conn.execute(ledger_sql.RELEASE, {"call_id": call_id})

    async def sweep(self) -> int:
        """Stop counting reservations past their TTL; returns how many expired."""
        async with self._pool.connection() as conn:
            row = await (await conn.execute(ledger_sql.SWEEP)).fetchone()
        expired = int(row["rows"]) if row is not None else 0
        if expired:
            log.warning("expired %d budget reservations never settled", expired)
        return expired

    async def _read_spend(self, payer: Payer) -> list[DictRow]:
        async with self._pool.connection() as conn:
            return await (
                await conn.execute(ledger_sql.SPEND, self._scope_params(payer))
            ).fetchall()

    async def spend(self, payer: Payer) -> tuple[ScopeSpend, ...]:
        """Current spend and limit of every scope for this payer."""
        rows = await self._read_spend(payer)
        if any(row["stale_usd"] > 0 for row in rows) and await self.sweep():
            rows = await self._read_spend(payer)
        return self._spend_of(rows)

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
        query = ledger_sql.SUMMARY.format(group="user_id," if by_user else "")
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


__all__ = ["PgUsageLedger", "UsageLedger"]
