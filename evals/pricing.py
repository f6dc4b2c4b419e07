"""Token prices (USD per million tokens) and the cost of a run's model calls.

Costs are computed from `AIMessage.usage_metadata`. The mock provider reports usage counted with
tiktoken's o200k_base for the model name it was asked for, so a mock run costs what the same
tokens would cost at the configured model's list price.
"""

from __future__ import annotations

from typing import Any

from core.observability.pricing import ModelPrice, list_prices

Price = ModelPrice
"""List price of one model, USD per million tokens (the service's own price table type)."""

PRICES: dict[str, Price] = list_prices()
"""The service's price table (core.observability.pricing); extend with `--price MODEL=IN,OUT`."""


def price_for(model: str, prices: dict[str, Price] = PRICES) -> Price | None:
    """Return the price of `model`, matching dated snapshots (`gpt-4o-mini-2024-07-18`)."""
    if model in prices:
        return prices[model]
    candidates = [name for name in prices if model.startswith(f"{name}-")]
    return prices[max(candidates, key=len)] if candidates else None


def parse_price(spec: str) -> tuple[str, Price]:
    """Parse `MODEL=INPUT,OUTPUT[,CACHED]` (USD per million tokens).

    Raises:
        ValueError: malformed specification.
    """
    model, sep, numbers = spec.partition("=")
    parts = numbers.split(",")
    if not sep or not model or len(parts) not in (2, 3):
        raise ValueError(f"expected MODEL=INPUT,OUTPUT[,CACHED], got {spec!r}")
    values = [float(p) for p in parts]
    return model, Price(values[0], values[1], values[2] if len(values) == 3 else None)


def usage_cost(
    usage: dict[str, Any], model: str, prices: dict[str, Price] = PRICES
) -> float | None:
    """USD for one call's `usage_metadata`; None when the model has no known price."""
    price = price_for(model, prices)
    if price is None:
        return None
    input_tokens = int(usage.get("input_tokens") or 0)
    output_tokens = int(usage.get("output_tokens") or 0)
    details = usage.get("input_token_details") or {}
    cached = min(int(details.get("cache_read") or 0), input_tokens)
    cached_price = price.input if price.cached_input is None else price.cached_input
    dollars = (
        (input_tokens - cached) * price.input + cached * cached_price + output_tokens * price.output
    )
    return dollars / 1_000_000
