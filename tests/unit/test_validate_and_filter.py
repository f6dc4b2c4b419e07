"""validate keeps only real citations; input_filter refuses what it cannot accept."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from nodes.input_filter import check_input
from nodes.validate import AnswerInvalid, keep_known_sources, parse_final_answer


def test_final_answer_parses_plain_and_fenced_json() -> None:
    assert parse_final_answer('{"answer": "Yes.", "sources": ["a#1"]}').sources == ["a#1"]
    assert parse_final_answer('```json\n{"answer": "Yes."}\n```').answer == "Yes."


@pytest.mark.parametrize(
    "text", ["Sure, here you go", '{"sources": []}', '{"answer": ""}', "[1, 2]"]
)
def test_invalid_final_answers_are_rejected(text: str) -> None:
    with pytest.raises(AnswerInvalid):
        parse_final_answer(text)


def test_only_retrieved_sources_survive_in_order_without_duplicates() -> None:
    kept, dropped = keep_known_sources(["b#2", "x#9", "a#1", "b#2"], {"a#1", "b#2"})
    assert kept == ["b#2", "a#1"]
    assert dropped == ["x#9"]


@pytest.mark.parametrize(
    ("content", "code"),
    [
        ("", "empty_input"),
        (" \n\t", "empty_input"),
        ("a" * 101, "input_too_large"),
        ([{"type": "image_url", "image_url": {"url": "x"}}], "unsupported_content"),
        ("bad \udc80 surrogate", "invalid_encoding"),
        ("nul \x00 byte", "invalid_encoding"),
    ],
)
def test_input_filter_reason_codes(content: Any, code: str) -> None:
    assert check_input(HumanMessage(content=content), max_chars=100) == code


def test_input_filter_accepts_text_and_text_parts() -> None:
    assert check_input(HumanMessage(content="Where is my order?"), max_chars=100) is None
    parts: list[str | dict[Any, Any]] = [
        {"type": "text", "text": "Where is"},
        {"type": "text", "text": " my order?"},
    ]
    assert check_input(HumanMessage(content=parts), max_chars=100) is None


def test_missing_user_message_is_empty_input() -> None:
    assert check_input(None, max_chars=100) == "empty_input"
