"""Deterministic demo orders (`steward seed`), also used by tests and evals.

Customers are fictional and use `example.com` addresses. Totals are the sum of the items and
span $19.99 to $2,499.00; nine orders are above the default $500 approval threshold.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from core.db.pool import DbPool

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DemoItem:
    """One order line; `price` is the unit price."""

    sku: str
    name: str
    qty: int
    price: Decimal

    def as_json(self) -> dict[str, object]:
        """Return the line as stored in `orders.items` (price as a decimal string)."""
        return {"sku": self.sku, "name": self.name, "qty": self.qty, "price": str(self.price)}


@dataclass(frozen=True, slots=True)
class DemoOrder:
    """A demo order; its total is derived from its items."""

    order_id: str
    customer_name: str
    customer_email: str
    status: str
    items: tuple[DemoItem, ...]
    placed_at: datetime
    currency: str = "USD"

    @property
    def total(self) -> Decimal:
        """Sum of the lines, two decimal places."""
        return sum((i.price * i.qty for i in self.items), Decimal("0.00"))

    @property
    def total_cents(self) -> int:
        """`total` in integer cents."""
        return int(self.total.scaleb(2))


_EPOCH = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


def _order(n: int, name: str, status: str, *items: tuple[str, str, int, str]) -> DemoOrder:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    local = ".".join(re.sub(r"[^a-z]", "", part) for part in ascii_name.split())
    return DemoOrder(
        order_id=f"LS-{10000 + n}",
        customer_name=name,
        customer_email=f"{local}@example.com",
        status=status,
        items=tuple(DemoItem(sku, title, qty, Decimal(price)) for sku, title, qty, price in items),
        placed_at=_EPOCH + timedelta(days=3 * n, hours=(7 * n) % 11, minutes=(13 * n) % 60),
    )


DEMO_ORDERS: tuple[DemoOrder, ...] = (
    _order(
        1, "Ava Thompson", "delivered", ("SK-TRS-3", "Trail running socks (3-pack)", 1, "19.99")
    ),
    _order(2, "Liam Carter", "delivered", ("HW-MB-01", "Merino beanie", 2, "34.50")),
    _order(
        3,
        "Noah Patel",
        "shipped",
        ("HY-BTL-1L", "Insulated water bottle 1 L", 1, "42.00"),
        ("HY-SLG-01", "Bottle sling", 1, "12.90"),
    ),
    _order(4, "Emma Rossi", "placed", ("JK-RAIN-UL", "Ultralight rain jacket", 1, "189.00")),
    _order(5, "Mia Schneider", "delivered", ("SL-DOWN-5", "Down sleeping bag -5 C", 1, "649.00")),
    _order(6, "Lucas Moreau", "cancelled", ("CK-STV-02", "Two-burner camp stove", 1, "129.90")),
    _order(
        7,
        "Sofia Almeida",
        "delivered",
        ("TN-4S-02", "Four-season tent, 2 person", 1, "899.00"),
        ("TN-FP-02", "Tent footprint", 1, "79.00"),
    ),
    _order(8, "Ethan Brooks", "shipped", ("TP-CF-PR", "Carbon trekking poles (pair)", 2, "119.00")),
    _order(9, "Olivia Nguyen", "delivered", ("EL-GPSW-2", "GPS multisport watch", 1, "549.99")),
    _order(
        10,
        "James Okafor",
        "placed",
        ("EL-HL-400", "Headlamp 400 lm", 1, "49.95"),
        ("EL-AAA-4", "AAA batteries (4-pack)", 4, "6.25"),
    ),
    _order(
        11, "Isabella Kowalski", "delivered", ("FW-HB-GTX", "Waterproof hiking boots", 1, "245.00")
    ),
    _order(12, "Mason Lindqvist", "delivered", ("PD-KAY-CF", "Carbon kayak paddle", 1, "329.00")),
    _order(
        13,
        "Charlotte Dubois",
        "shipped",
        ("BT-KAY-INF", "Inflatable touring kayak", 1, "1199.00"),
        ("BT-PFD-M", "Life vest (PFD)", 2, "89.50"),
    ),
    _order(
        14,
        "Henry Yamamoto",
        "delivered",
        ("CL-HRN-01", "Climbing harness", 1, "74.00"),
        ("CL-BLY-01", "Belay device", 1, "32.00"),
        ("CL-CRB-LK", "Locking carabiner", 6, "14.50"),
    ),
    _order(15, "Amelia Novak", "cancelled", ("RC-BOX-450", "Roof cargo box 450 L", 1, "719.00")),
    _order(16, "Benjamin Adeyemi", "delivered", ("FD-MEAL-01", "Freeze-dried meal", 3, "11.99")),
    _order(
        17, "Harper Jensen", "delivered", ("BK-EKIT-750", "E-bike conversion kit", 1, "2499.00")
    ),
    _order(
        18,
        "Elijah Fischer",
        "placed",
        ("PW-SOL-100", "Folding solar panel 100 W", 1, "289.00"),
        ("PW-STN-500", "Portable power station 500 Wh", 1, "499.00"),
    ),
    _order(19, "Evelyn Garcia", "shipped", ("JK-FLC-01", "Fleece jacket", 1, "99.00")),
    _order(
        20,
        "Alexander Müller",
        "delivered",
        ("PK-65L-01", "Backpack 65 L", 1, "279.00"),
        ("PK-RCV-65", "Backpack rain cover", 1, "24.00"),
    ),
    _order(
        21,
        "Abigail Svensson",
        "delivered",
        ("OP-BIN-1042", "Binoculars 10x42", 1, "499.00"),
        ("OP-STR-01", "Binocular harness strap", 1, "25.00"),
    ),
    _order(22, "Daniel Kim", "placed", ("CF-CHR-01", "Camp chair", 1, "59.90")),
    _order(
        23,
        "Grace O'Connor",
        "delivered",
        ("BK-HLM-MTB", "Mountain bike helmet", 1, "159.00"),
        ("BK-GLV-01", "Cycling gloves", 2, "29.50"),
    ),
    _order(24, "Samuel Haddad", "shipped", ("BK-FRM-RD", "Carbon road bike frame", 1, "1849.00")),
)
"""`LS-10001` ... `LS-10024`, stable across runs."""

DEMO_ORDER_IDS: tuple[str, ...] = tuple(o.order_id for o in DEMO_ORDERS)

_UPSERT = """
    INSERT INTO orders (order_id, customer_name, customer_email, status, currency, total_cents,
                        items, placed_at)
    VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
    ON CONFLICT (order_id) DO UPDATE SET
        customer_name = EXCLUDED.customer_name,
        customer_email = EXCLUDED.customer_email,
        status = EXCLUDED.status,
        currency = EXCLUDED.currency,
        total_cents = EXCLUDED.total_cents,
        items = EXCLUDED.items,
        placed_at = EXCLUDED.placed_at
"""


async def seed_demo_orders(pool: DbPool, *, reset: bool = False) -> int:
    """Insert or update the demo orders; return how many there are.

    Idempotent. With `reset=True` the refunds and recorded rejections (`refund_rejections`,
    which the split rule reads) of the demo orders are deleted first, which brings them back to
    their initial state (other orders, refunds and the approvals themselves are untouched).
    """
    params = [
        (
            o.order_id,
            o.customer_name,
            o.customer_email,
            o.status,
            o.currency,
            o.total_cents,
            Jsonb([i.as_json() for i in o.items]),
            o.placed_at,
        )
        for o in DEMO_ORDERS
    ]
    async with pool.connection() as conn, conn.transaction():
        if reset:
            await conn.execute(
                "DELETE FROM refunds WHERE order_id = ANY(%s)", (list(DEMO_ORDER_IDS),)
            )
            await conn.execute(
                "DELETE FROM refund_rejections WHERE order_id = ANY(%s)", (list(DEMO_ORDER_IDS),)
            )
        async with conn.cursor() as cur:
            await cur.executemany(_UPSERT, params)
    logger.info("seeded %d demo orders (reset=%s)", len(DEMO_ORDERS), reset)
    return len(DEMO_ORDERS)


async def reset_demo_orders(pool: DbPool, order_ids: Iterable[str]) -> None:
    """Bring the named demo orders back to their initial state.

    Deletes their refunds and recorded rejections; ids that are not demo orders are ignored
    (real orders are never touched).
    """
    ids = sorted(set(order_ids) & set(DEMO_ORDER_IDS))
    if not ids:
        return
    async with pool.connection() as conn, conn.transaction():
        await conn.execute("DELETE FROM refunds WHERE order_id = ANY(%s)", (ids,))
        await conn.execute("DELETE FROM refund_rejections WHERE order_id = ANY(%s)", (ids,))


__all__ = [
    "DEMO_ORDERS",
    "DEMO_ORDER_IDS",
    "DemoItem",
    "DemoOrder",
    "reset_demo_orders",
    "seed_demo_orders",
]
