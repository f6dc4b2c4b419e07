"""The one LLM price table (USD per million tokens) and the rules for reading it.

- Table: public list prices, extended at start-up with `set_model_price`; `STEWARD_MODEL_PRICES`
  entries replace or add models (`price_table(settings)`).
- Lookup (`price_of`), for every consumer: the exact name, else the undated name of a dated
  snapshot (`gpt-4o-mini-2024-07-18`; only a date suffix is stripped). A model with no entry
  is *unpriced*: None, which logs, metrics and evals report as such.
- Charging (`price_for`, `cost_usd`; the budget ledger): an unpriced model is charged
  `FALLBACK_PRICE`, the dearest list price (logged once), so it can never run without
  budgets; the offline demo model is free.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from threading import Lock
from typing import Any

from core.settings import Settings, get_settings

log = logging.getLogger(__name__)

_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")
MILLION = Decimal(1_000_000)


@dataclass(frozen=True)
class ModelPrice:
    """Price of one model in USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None
    """Price of prompt tokens served from the provider's cache; None means `input`."""


PRICES: dict[str, ModelPrice] = {
    "gpt-4o-mini": ModelPrice(input=0.15, output=0.60, cached_input=0.075),
    "gpt-4o": ModelPrice(input=2.50, output=10.00, cached_input=1.25),
    "gpt-4.1": ModelPrice(input=2.00, output=8.00, cached_input=0.50),
    "gpt-4.1-mini": ModelPrice(input=0.40, output=1.60, cached_input=0.10),
    "gpt-4.1-nano": ModelPrice(input=0.10, output=0.40, cached_input=0.025),
    "o4-mini": ModelPrice(input=1.10, output=4.40, cached_input=0.275),
    "o3-mini": ModelPrice(input=1.10, output=4.40, cached_input=0.55),
}
"""The list prices (model name -> price); change it through `set_model_price`."""
_lock = Lock()

FALLBACK_PRICE = ModelPrice(input=2.50, output=10.00, cached_input=1.25)
"""What the budget charges an unpriced model: the dearest list price (gpt-4o)."""
FREE = ModelPrice(input=0.0, output=0.0)
_FREE_MODELS = frozenset({"steward-demo"})
"""The offline demo model (mock_llm.demo_model.DEMO_MODEL_NAME): no provider bills it."""

_warned: set[str] = set()


def set_model_price(model: str, price: ModelPrice) -> None:
    """Add or replace the list price of `model` (also used for its dated snapshots)."""
    with _lock:
        PRICES[model] = price


def list_prices() -> dict[str, ModelPrice]:
    """A copy of the list prices (model name -> price)."""
    with _lock:
        return dict(PRICES)


def price_table(settings: Settings | None = None) -> dict[str, ModelPrice]:
    """The list prices with `STEWARD_MODEL_PRICES` over them.

    Args:
        settings: whose `model_prices` apply; None means the process settings.
    """
    overrides = (settings if settings is not None else get_settings()).model_prices
    table = list_prices()
    for model, price in overrides.items():
        table[model] = ModelPrice(
            input=float(price.get("input", 0.0)),
            output=float(price.get("output", 0.0)),
            cached_input=price.get("cached_input"),
        )
    return table


def price_of(model: str, table: Mapping[str, ModelPrice] | None = None) -> ModelPrice | None:
    """Return the price of `model` or of its undated name; None when it is unpriced.

    Only a date suffix is stripped: `gpt-4o-audio-preview` is not priced as `gpt-4o`.

    Args:
        model: the model name (requested or reported by the provider).
        table: the table to read; None means `price_table()` (the process settings).
    """
    prices = table if table is not None else price_table()
    exact = prices.get(model)
    if exact is not None:
        return exact
    return prices.get(_SNAPSHOT_SUFFIX.sub("", model))


def known_cost_usd(
    model: str,
    *,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
    table: Mapping[str, ModelPrice] | None = None,
) -> float | None:
    """Return the USD cost of one call, or None when the model is unpriced (reporting).

    Args:
        model: the model name (requested or reported by the provider).
        input_tokens: prompt tokens, including cached ones (OpenAI's convention).
        output_tokens: completion tokens, including reasoning tokens.
        cached_input_tokens: the part of `input_tokens` read from the provider's cache.
        table: the table to read; None means `price_table()` (the process settings).
    """
    price = price_of(model, table)
    if price is None:
        return None
    cached = min(max(cached_input_tokens, 0), input_tokens)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    return (
        (input_tokens - cached) * price.input + cached * cached_rate + output_tokens * price.output
    ) / 1_000_000


def usage_cost(
    usage: Mapping[str, Any], model: str, prices: Mapping[str, ModelPrice] | None = None
) -> float | None:
    """USD for one call's LangChain `usage_metadata`; None when the model is unpriced."""
    input_tokens = int(usage.get("input_tokens") or 0)
    details = usage.get("input_token_details") or {}
    return known_cost_usd(
        model,
        input_tokens=input_tokens,
        output_tokens=int(usage.get("output_tokens") or 0),
        cached_input_tokens=int(details.get("cache_read") or 0),
        table=prices,
    )


def parse_price(spec: str) -> tuple[str, ModelPrice]:
    """Parse `MODEL=INPUT,OUTPUT[,CACHED]` (USD per million tokens).

    Raises:
        ValueError: malformed specification.
    """
    model, sep, numbers = spec.partition("=")
    parts = numbers.split(",")
    if not sep or not model or len(parts) not in (2, 3):
        raise ValueError(f"expected MODEL=INPUT,OUTPUT[,CACHED], got {spec!r}")
    values = [float(p) for p in parts]
    return model, ModelPrice(values[0], values[1], values[2] if len(values) == 3 else None)


def price_for(model: str, settings: Settings) -> ModelPrice:
    """The price the budget charges for `model`: its price, free (demo), else the fallback."""
    price = price_of(model, price_table(settings))
    if price is not None:
        return price
    if model in _FREE_MODELS:
        return FREE
    if model not in _warned:
        _warned.add(model)
        log.warning(
            "no price for model; charging the fallback price",
            extra={"model": model, "reason_code": "unpriced_model"},
        )
    return FALLBACK_PRICE


def cost_usd(
    model: str,
    settings: Settings,
    *,
    input_tokens: int,
    output_tokens: int,
    cached_input_tokens: int = 0,
) -> Decimal:
    """USD the budget charges for one call (Decimal, exact to the token)."""
    price = price_for(model, settings)
    cached = min(max(cached_input_tokens, 0), input_tokens)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    micro = (
        Decimal(input_tokens - cached) * Decimal(str(price.input))
        + Decimal(cached) * Decimal(str(cached_rate))
        + Decimal(output_tokens) * Decimal(str(price.output))
    )
    return micro / MILLION


__all__ = [
    "FALLBACK_PRICE",
    "PRICES",
    "ModelPrice",
    "cost_usd",
    "known_cost_usd",
    "list_prices",
    "parse_price",
    "price_for",
    "price_of",
    "price_table",
    "set_model_price",
    "usage_cost",
]
