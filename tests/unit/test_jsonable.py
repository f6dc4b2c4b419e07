"""The one JSON converter never fails on a graph value: what orjson refuses still serialises."""

from __future__ import annotations

import json

from core.jsonable import dumps, to_jsonable


def test_tuple_keys_become_strings() -> None:
    assert json.loads(dumps({(1, 2): "x"})) == {"(1, 2)": "x"}


def test_integers_beyond_64_bits_pass_through() -> None:
    big = 2**70
    assert to_jsonable({"amount": big, "nested": [big]}) == {"amount": big, "nested": [big]}


def test_non_finite_floats_are_null_on_both_paths() -> None:
    assert json.loads(dumps({"x": float("nan")})) == {"x": None}
    assert json.loads(dumps({(1,): float("inf")})) == {"(1,)": None}


def test_nul_characters_are_replaced_on_the_fallback_path_too() -> None:
    assert json.loads(dumps({(1,): "a\x00b", "big": 2**70})) == {"(1,)": "a\ufffdb", "big": 2**70}
