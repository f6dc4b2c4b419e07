"""PII and secret redaction (Presidio pattern recognizers, offline) and the redacting serde."""

from __future__ import annotations

import itertools

import pytest
from langchain_core.messages import AIMessage, HumanMessage

from core.guardrails.pii import find_pii, redact_text
from core.guardrails.serde import WITHHELD, RedactingSerializer, redact_user_input

CASES = [
    ("Send the label to ava.thompson@gmail.com please", "ava.thompson@gmail.com", "[EMAIL]"),
    ("write to ops@larkspur.internal", "ops@larkspur.internal", "[EMAIL]"),
    ("call me on +1 (415) 555-0132 after five", "+1 (415) 555-0132", "[PHONE]"),
    ("my cell is 415-555-0132", "415-555-0132", "[PHONE]"),
    ("UK number 020 7946 0958", "020 7946 0958", "[PHONE]"),
    ("card 4111 1111 1111 1111 exp 09/27", "4111 1111 1111 1111", "[CARD]"),
    ("card 5555-5555-5555-4444", "5555-5555-5555-4444", "[CARD]"),
    ("IBAN DE89 3704 0044 0532 0130 00 please", "DE89 3704 0044 0532 0130 00", "[IBAN]"),
    ("GB33BUKB20201555555555 is my account", "GB33BUKB20201555555555", "[IBAN]"),
    ("my ssn is 536-22-8145", "536-22-8145", "[SSN]"),
    (
        "key sk-proj-abcdefghijklmnopqrstuvwxyz123456",
        "sk-proj-abcdefghijklmnopqrstuvwxyz123456",
        "[SECRET]",
    ),
    ("aws AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE", "[SECRET]"),
    (
        "token ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "[SECRET]",
    ),
    (
        "our key stw_0123abcd_abcdefghijklmnopqrstuvwxyzABCDEF",
        "stw_0123abcd_abcdefghijklmnopqrstuvwxyzABCDEF",
        "[SECRET]",
    ),
    ("my password is hunter22", "hunter22", "[SECRET]"),
    (
        "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl",
        "[SECRET]",
    ),
]


@pytest.mark.parametrize(("text", "value", "placeholder"), CASES)
def test_each_entity_is_redacted(text: str, value: str, placeholder: str) -> None:
    redaction = redact_text(text)
    assert value not in redaction.text
    assert placeholder in redaction.text
    assert redaction.changed


@pytest.mark.parametrize(
    "text",
    [
        "Please refund $120 on order LS-10007, it arrived on 2026-05-01.",
        "Order #W2378156 totals $1,199.00; I have 3 items and 2 boxes.",
        "The card number 4111 1111 1111 1112 fails the Luhn check.",  # not a valid card
        "My password is not working and the password is incorrect.",
        "Tracking 1Z999AA10123456784 says delivered at 14:05.",
        "The order was 129.90 USD and 42 items of SK-TRS-3.",
    ],
)
def test_support_text_without_pii_is_left_alone(text: str) -> None:
    assert redact_text(text).text == text


def test_published_contacts_can_be_kept() -> None:
    answer = "Write to security@larkspursupply.example or to jane.doe@gmail.com."
    policy = "Report incidents to security@larkspursupply.example within 24 hours."
    kept = redact_text(answer, keep_if_in=policy)
    assert "security@larkspursupply.example" in kept.text
    assert "jane.doe@gmail.com" not in kept.text


def test_findings_never_overlap() -> None:
    spans = find_pii("mail jane.doe@example.com or call +1 415 555 0132")
    assert [f.entity for f in spans] == ["EMAIL_ADDRESS", "PHONE_NUMBER"]
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))


def test_serializer_redacts_every_user_message_shape() -> None:
    raw = "mail me at jane.doe@gmail.com"
    start = {
        "messages": [
            {"role": "user", "content": raw},
            ("user", raw),
            ("human", raw),
            HumanMessage(raw, id="m1"),
            AIMessage(raw),
        ]
    }
    clean = redact_user_input(start)
    assert clean["messages"][0]["content"] == "mail me at [EMAIL]"
    assert clean["messages"][1] == ("user", "mail me at [EMAIL]")
    assert clean["messages"][3].id == "m1" and "[EMAIL]" in clean["messages"][3].content
    assert clean["messages"][4].content == raw, "model output is validate's business"
    assert redact_user_input({"messages": raw}) == {"messages": "mail me at [EMAIL]"}
    parts = HumanMessage([{"type": "text", "text": raw}])
    assert redact_user_input(parts).content[0]["text"] == "mail me at [EMAIL]"
    assert redact_user_input(HumanMessage("x" * 30_000)).content == WITHHELD


def test_serializer_returns_the_same_object_when_nothing_changes() -> None:
    value = {"messages": [HumanMessage("where is LS-10001?")], "model_calls": 1}
    assert redact_user_input(value) is value


def test_redacting_serializer_round_trips_without_the_raw_text() -> None:
    serde = RedactingSerializer()
    kind, data = serde.dumps_typed([HumanMessage("card 4111 1111 1111 1111", id="a")])
    assert b"4111 1111 1111 1111" not in data
    [message] = serde.loads_typed((kind, data))
    assert message.content == "card [CARD]" and message.id == "a"
