"""The varied policy questions the benches ask: no cache can stand in for the work.

Question `n` is a template over 22 policy topics and 6 phrasings, made unique by an order
number and `n` (bench/http_load.py, bench/graph_overhead.py, bench/detection_rates.py).
"""

from __future__ import annotations

TOPICS = (
    "the return window",
    "returning an item without a receipt",
    "how refunds are paid back",
    "standard shipping times",
    "customs fees on international orders",
    "a package marked delivered that never arrived",
    "an item that arrived damaged",
    "cancelling an order after it has shipped",
    "a price drop right after I bought something",
    "warranty coverage for electronics",
    "gift card expiry",
    "loyalty points and when they expire",
    "paying with store credit or PayPal",
    "returns of holiday season purchases",
    "a product that has been recalled",
    "discounts for bulk orders",
    "the employee discount",
    "getting back into a locked account",
    "how my personal data is used",
    "how long you keep my order history",
    "accessibility support for screen readers",
    "escalating a complaint to a manager",
)
PHRASINGS = (
    "What is your policy on {topic}? My order number is {order}.",
    "Can you explain the rules for {topic}? This is about order {order}.",
    "How do you handle {topic}? (ticket {n})",
    "I bought something on order {order}. What applies to {topic}?",
    "Question {n}: what does the policy say about {topic}? My order is {order}.",
    "Could you tell me about {topic}, please? Reference {n}.",
)


def question(n: int) -> str:
    """The n-th question: every (topic, phrasing) pair in turn, made unique by `n`."""
    topic = TOPICS[n % len(TOPICS)]
    phrasing = PHRASINGS[(n // len(TOPICS)) % len(PHRASINGS)]
    return phrasing.format(topic=topic, order=20000 + n % 80000, n=n)
