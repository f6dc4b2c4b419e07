"""USD prices per model: `STEWARD_MODEL_PRICES` over the list prices of observability.pricing.

A model with no known price is charged at the most expensive listed price (and logged once),
so an unpriced model can never run without budgets. The offline demo model is free.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from core.observability.pricing import ModelPrice, price_of
from core.settings import Settings

log = logging.getLogger(__name__)

MILLION = Decimal(1_000_000)
FALLBACK_PRICE = ModelPrice(input=2.50, output=10.00, cached_input=1.25)
"""Charged for unknown models: the dearest list price in observability.pricing (gpt-4o)."""

FREE = ModelPrice(input=0.0, output=0.0)
_FREE_MODELS = frozenset({"steward-demo"})
"""The offline demo model (mock_llm.demo_model.DEMO_MODEL_NAME): no provider bills it."""

_warned: set[str] = set()


def price_for(model: str, settings: Settings) -> ModelPrice:
    """The price of `model`: settings override, else list price, else the fallback."""
    override = settings.model_prices.get(model)
    if override is not None:
        return ModelPrice(
            input=float(override.get("input", 0.0)),
            output=float(override.get("output", 0.0)),
            cached_input=override.get("cached_input"),
        )
    if model in _FREE_MODELS:
        return FREE
    listed = price_of(model)
    if listed is not None:
        return listed
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
    """USD cost of one call (Decimal, exact to the token)."""
    price = price_for(model, settings)
    cached = min(max(cached_input_tokens, 0), input_tokens)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    micro = (
        Decimal(input_tokens - cached) * Decimal(str(price.input))
        + Decimal(cached) * Decimal(str(cached_rate))
        + Decimal(output_tokens) * Decimal(str(price.output))
    )
    return micro / MILLION


__all__ = ["FALLBACK_PRICE", "cost_usd", "price_for"]
