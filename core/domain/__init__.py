"""Business domain: orders and refunds (types, the Postgres store, demo data)."""

from core.domain.orders import PgOrderStore
from core.domain.seed import DEMO_ORDERS, seed_demo_orders
from core.domain.types import (
    Approval,
    OrderStore,
    OrderView,
    RefundRefused,
    RefundRequest,
    RefundResult,
    action_hash,
)

__all__ = [
    "DEMO_ORDERS",
    "Approval",
    "OrderStore",
    "OrderView",
    "PgOrderStore",
    "RefundRefused",
    "RefundRequest",
    "RefundResult",
    "action_hash",
    "seed_demo_orders",
]
