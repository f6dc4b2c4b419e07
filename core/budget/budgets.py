"""Budget limits and the identity a model call is charged to.

Three scopes, each optional (`None` = unlimited): per user per UTC day, per tenant per UTC
calendar month, per conversation thread. A call is refused before it is made when any scope's
spend (settled costs plus live reservations) plus the call's reservation would exceed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from core.settings import Settings

Scope = Literal["user_day", "tenant_month", "thread"]
BUDGET_EXCEEDED = "budget_exceeded"
"""Refusal code of a turn stopped by a budget (the API answers it with HTTP 429)."""
DEFAULT_TENANT = "default"
ANONYMOUS_USER = "anonymous"


@dataclass(frozen=True, slots=True)
class BudgetLimits:
    """USD limits per scope (None: unlimited)."""

    user_day: Decimal | None
    tenant_month: Decimal | None
    thread: Decimal | None

    @classmethod
    def from_settings(cls, settings: Settings) -> BudgetLimits:
        """Read `STEWARD_BUDGET_*`."""
        return cls(
            user_day=settings.budget_user_day_usd,
            tenant_month=settings.budget_tenant_month_usd,
            thread=settings.budget_thread_usd,
        )

    def of(self, scope: Scope) -> Decimal | None:
        """The limit of one scope."""
        limit: Decimal | None = getattr(self, scope)
        return limit


@dataclass(frozen=True, slots=True)
class Payer:
    """Who a model call is charged to (ids from the run's context, never user text)."""

    tenant_id: str
    user_id: str
    thread_id: str | None
    run_id: str | None


@dataclass(frozen=True, slots=True)
class ScopeSpend:
    """Spend and limit of one scope."""

    scope: Scope
    spent_usd: Decimal
    limit_usd: Decimal | None

    @property
    def remaining_usd(self) -> Decimal | None:
        """What is left (never negative); None when unlimited."""
        if self.limit_usd is None:
            return None
        return max(self.limit_usd - self.spent_usd, Decimal(0))


@dataclass(frozen=True, slots=True)
class Reservation:
    """The outcome of asking to reserve one call's estimate."""

    call_id: str | None
    """The ledger row, when granted."""
    exceeded: Scope | None
    """The first scope that would be exceeded, when refused."""
    spend: tuple[ScopeSpend, ...]

    @property
    def granted(self) -> bool:
        """True when the call may go ahead."""
        return self.exceeded is None


__all__ = [
    "ANONYMOUS_USER",
    "BUDGET_EXCEEDED",
    "DEFAULT_TENANT",
    "BudgetLimits",
    "Payer",
    "Reservation",
    "Scope",
    "ScopeSpend",
]
