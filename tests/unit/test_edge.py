"""`server.edge`: the generic body, query and path checks, without a server."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.errors import Unprocessable
from server.edge import MAX_JSON_DEPTH, check_body, check_json_value, check_path, check_query

TEXT = st.text(alphabet=st.characters(exclude_characters="\x00"))
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


def test_very_deep_bodies_never_raise_recursion_error() -> None:
    for depth in (MAX_JSON_DEPTH + 1, 1000, 100_000):
        with pytest.raises(Unprocessable, match="nested deeper than 64"):
            check_body(b"[" * depth + b"]" * depth)
    check_body(b"[" * MAX_JSON_DEPTH + b"]" * MAX_JSON_DEPTH)


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"metadata": {"a": "x\x00"}}, "metadata.a"),
        ({"ids": ["ok", "\x00"]}, "ids[1]"),
        ({"a": {"b\x00": 1}}, "a.b"),
        ("\x00", "body"),
    ],
)
def test_nul_names_its_path(value: Any, path: str) -> None:
    with pytest.raises(Unprocessable, match="NUL") as info:
        check_json_value(value)
    assert info.value.detail.startswith(path)


def test_integers_must_fit_64_bits() -> None:
    check_json_value({"n": 2**63 - 1, "m": -(2**63)})
    for n in (2**63, -(2**63) - 1, 2**64 - 1):
        with pytest.raises(Unprocessable, match="out of range"):
            check_json_value({"offset": n})


@given(JSON)
def test_clean_json_passes(value: Any) -> None:
    check_json_value(value)


@given(JSON, st.text(min_size=0, max_size=5))
def test_a_nul_is_always_found(value: Any, prefix: str) -> None:
    with pytest.raises(Unprocessable, match="NUL"):
        check_json_value({"outer": [value, {"k": f"{prefix}\x00"}]})


def test_query_and_path() -> None:
    check_query(b"limit=10&tenant=acme")
    with pytest.raises(Unprocessable, match="'tenant'"):
        check_query(b"limit=10&tenant=a%00b")
    check_path("/threads/abc")
    with pytest.raises(Unprocessable, match="path"):
        check_path("/threads/a\x00b")


@pytest.mark.parametrize("raw", [b"{nope", b'{"a": NaN}', b'{"a": 1e999}', b'"\\ud800"'])
def test_malformed_json(raw: bytes) -> None:
    with pytest.raises(Unprocessable, match="malformed JSON"):
        check_body(raw)
