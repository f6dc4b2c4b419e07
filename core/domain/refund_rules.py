"""Domain checks on a refund, made before anyone is asked to approve it.

A person should never be asked to approve a refund that can never succeed: an order that was
never captured (cancelled, or placed and not shipped: the policy offers cancellation), an
amount above what is left to refund, or another currency. The store and the database refuse
the same refunds again when they execute.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from core.domain.orders import CAPTURED_STATUSES, not_captured_reason
from core.domain.types import OrderView


def refund_blocker(
    order: OrderView | None, order_id: str, amount: Decimal | str, currency: str | None = None
) -> str | None:
    """Why this refund cannot succeed, or None when the order allows it."""
    if order is None:
        return f"order {order_id} was not found"
    if order["status"] not in CAPTURED_STATUSES:
        return not_captured_reason(order_id, order["status"])
    if currency is not None and currency.upper() != order["currency"].upper():
        return (
            f"order {order_id} was paid in {order['currency']}; refunds are made in the "
            "order's currency"
        )
    try:
        wanted, left = Decimal(str(amount)), Decimal(order["refundable"])
    except InvalidOperation:
        return "the amount is not a valid number"
    if wanted > left:
        return (
            f"order {order_id} has {order['refundable']} {order['currency']} left to refund "
            f"(total {order['total']}, already refunded {order['refunded']}); "
            f"{wanted} was requested"
        )
    return None


__all__ = ["refund_blocker"]
