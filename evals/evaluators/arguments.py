"""Matching a tool call's arguments against the expected ones."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any


def same_value(actual: Any, expected: Any) -> bool:
    """Compare argument values: numbers as decimals (`700 == "700.00"`), ids case-insensitively."""
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual is expected
    if isinstance(expected, int | float | Decimal) or (
        isinstance(expected, str) and isinstance(actual, int | float)
    ):
        try:
            return Decimal(str(actual)) == Decimal(str(expected))
        except InvalidOperation:
            return False
    if isinstance(expected, str) and isinstance(actual, str):
        return actual.strip().casefold() == expected.strip().casefold()
    return bool(actual == expected)


def args_match(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> bool:
    """Every expected argument is present with the same value; extra arguments are fine."""
    return all(key in actual and same_value(actual[key], value) for key, value in expected.items())
