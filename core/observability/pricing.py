"""LLM list prices (USD per million tokens) for cost accounting in logs, metrics and traces.

The table holds public list prices for the models this service is configured with by default;
override or extend it at start-up with `set_model_price` (e.g. for a negotiated rate or a
self-hosted model, priced 0). Unknown models cost nothing and are reported as unpriced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from threading import Lock

_SNAPSHOT_SUFFIX = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


@dataclass(frozen=True)
class ModelPrice:
    """Price of one model in USD per million tokens."""

    input: float
    output: float
    cached_input: float | None = None
    """Price of prompt tokens served from the provider's cache; None means `input`."""


_PRICES: dict[str, ModelPrice] = {
    "gpt-4o-mini": ModelPrice(input=0.15, output=0.60, cached_input=0.075),
    "gpt-4o": ModelPrice(input=2.50, output=10.00, cached_input=1.25),
    "gpt-4.1": ModelPrice(input=2.00, output=8.00, cached_input=0.50),
    "gpt-4.1-mini": ModelPrice(input=0.40, output=1.60, cached_input=0.10),
    "gpt-4.1-nano": ModelPrice(input=0.10, output=0.40, cached_input=0.025),
    "o4-mini": ModelPrice(input=1.10, output=4.40, cached_input=0.275),
    "o3-mini": ModelPrice(input=1.10, output=4.40, cached_input=0.55),
}
_lock = Lock()


def set_model_price(model: str, price: ModelPrice) -> None:
    """Add or replace the price of `model` (also used for its dated snapshots)."""
    with _lock:
        _PRICES[model] = price


def list_prices() -> dict[str, ModelPrice]:
    """A copy of the current price table (model name -> price)."""
    with _lock:
        return dict(_PRICES)


def price_of(model: str) -> ModelPrice | None:
    """Return the price for `model` or its undated name (`gpt-4o-mini-2024-07-18`).

    Only a date suffix is stripped: `gpt-4o-audio-preview` is not priced as `gpt-4o`.
    """
    with _lock:
        exact = _PRICES.get(model)
        if exact is not None:
            return exact
        return _PRICES.get(_SNAPSHOT_SUFFIX.sub("", model))


def cost_usd(
    model: str, *, input_tokens: int, output_tokens: int, cached_input_tokens: int = 0
) -> float | None:
    """Return the USD cost of one call, or None when the model has no known price.

    Args:
        model: the model name (requested or reported by the provider).
        input_tokens: prompt tokens, including cached ones (OpenAI's convention).
        output_tokens: completion tokens, including reasoning tokens.
        cached_input_tokens: the part of `input_tokens` read from the provider's cache.
    """
    price = price_of(model)
    if price is None:
        return None
    cached = min(max(cached_input_tokens, 0), input_tokens)
    cached_rate = price.cached_input if price.cached_input is not None else price.input
    return (
        (input_tokens - cached) * price.input + cached * cached_rate + output_tokens * price.output
    ) / 1_000_000


__all__ = ["ModelPrice", "cost_usd", "list_prices", "price_of", "set_model_price"]
