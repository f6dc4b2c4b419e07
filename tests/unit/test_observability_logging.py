"""Structured logging: JSON/console rendering, extra fields, run context, PII masking."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from langchain_core.runnables import RunnableLambda

from core.observability.logging import (
    CONTEXT_KEYS,
    configure_logging,
    current_request_id,
    get_logger,
    log_context,
    reset_logging,
)
from core.observability.redact import redact_mapping, redact_text, redact_value

EMAIL = "jane.doe@example.com"
CARD = "4111 1111 1111 1111"
CARD_DASHED = "4111-1111-1111-1111"
CARD_PLAIN = "4111111111111111"


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]


@pytest.fixture(name="json_logs")
def fx_json_logs() -> Iterator[Captured]:
    captured = Captured()
    root = logging.getLogger()
    level = root.level
    configure_logging(fmt="json", level="DEBUG", stream=captured.stream)
    try:
        yield captured
    finally:
        reset_logging()
        root.setLevel(level)


# ------------------------------------------------------------------------------- redaction


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        (f"mail {EMAIL} now", "mail [EMAIL] now"),
        (f"card {CARD}.", "card [CARD]."),
        (f"card {CARD_DASHED}", "card [CARD]"),
        (f"card {CARD_PLAIN}", "card [CARD]"),
        ("amex 3782 822463 10005", "amex [CARD]"),
        ("ssn 078-05-1120", "ssn [SSN]"),
        ("call +1 415 555 0100 today", "call [PHONE] today"),
        ("key stw_0a1b2c3d_abcdefghijklmnopqrstuvwxyz012345", "key [SECRET]"),
        ("sk-proj-abcdefghijklmnop1234", "[SECRET]"),
        ("lsv2_pt_0123456789abcdef0123456789", "[SECRET]"),
        ("Authorization: Bearer abcdefghijklmnop.qrs", "Authorization: Bearer [SECRET]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
            "jwt [SECRET]",
        ),
        ("a@b.co and c.d+x@mail.example.org.", "[EMAIL] and [EMAIL]."),
        (
            "due 2026-09-15, card 4111111111111111, ssn 078-05-1120",
            "due 2026-09-15, card [CARD], ssn [SSN]",
        ),
        ("(4111 1111 1111 1111)", "([CARD])"),
    ],
)
def test_redact_text_masks_pii_and_secrets(raw: str, masked: str) -> None:
    assert redact_text(raw) == masked


@pytest.mark.parametrize(
    "kept",
    [
        "Refund $700.00 on LS-10007 please",
        "thread 0d040ca8-8f28-442a-8ffb-97c9955fe09a",
        "2026-11-27T03:06:06.091943+00:00",
        "call_f966c88fda8fc250f14052db",
        "order 123456789012 (12 digits)",
        "refund-policy#2 score 0.4898",
        "see risk-assessment-frameworks-v2 and task-management-guidelines",
        "ping @larkspur.support on the forum",
        "ordered 2026-09-15 (3 items), 1,299.00 USD",
    ],
)
def test_redact_text_keeps_ordinary_values(kept: str) -> None:
    assert redact_text(kept) == kept


def test_redact_mapping_masks_nested_values_and_sensitive_keys() -> None:
    class Opaque:
        def __str__(self) -> str:
            return f"Opaque({EMAIL})"

    out = redact_mapping(
        {
            "event": f"user {EMAIL}",
            "nested": {"cards": [CARD, ("x", CARD_PLAIN)], "n": 3, "ok": True, "none": None},
            "Authorization": "Bearer whatever-token-value",
            "api_key": "short",
            "input_tokens": 12,
            "obj": Opaque(),
        }
    )
    assert out["event"] == "user [EMAIL]"
    assert out["nested"] == {"cards": ["[CARD]", ["x", "[CARD]"]], "n": 3, "ok": True, "none": None}
    assert out["Authorization"] == "[SECRET]" and out["api_key"] == "[SECRET]"
    assert out["input_tokens"] == 12, "token counts are not secrets"
    assert out["obj"] == "Opaque([EMAIL])"


def test_redact_value_is_bounded_on_deep_structures() -> None:
    deep: Any = EMAIL
    for _ in range(50):
        deep = [deep]
    assert EMAIL not in json.dumps(redact_value(deep), default=str)


# --------------------------------------------------------------------------------- logging


def test_stdlib_extra_fields_survive_and_every_line_has_the_context_keys(
    json_logs: Captured,
) -> None:
    logging.getLogger("nodes.guard_tools").info(
        "tool call denied", extra={"tool": "drop_tables", "reason": "not available"}
    )
    [line] = json_logs.lines()
    assert line["event"] == "tool call denied"
    assert line["tool"] == "drop_tables" and line["reason"] == "not available"
    assert line["logger"] == "nodes.guard_tools" and line["level"] == "info"
    assert "timestamp" in line
    for key in CONTEXT_KEYS:
        assert key in line and line[key] is None


def test_bound_context_appears_on_stdlib_and_structlog_lines_and_is_restored(
    json_logs: Captured,
) -> None:
    with log_context(
        request_id="req-1", run_id="run-1", thread_id="t-1", tenant_id="acme", user_id="alice"
    ):
        logging.getLogger("x").warning("plain %s", "arg")
        get_logger("y").info("structured", answer=42)
        assert current_request_id() == "req-1"
    logging.getLogger("x").info("after")
    first, second, third = json_logs.lines()
    assert current_request_id() is None
    for line in (first, second):
        assert {k: line[k] for k in CONTEXT_KEYS} == {
            "request_id": "req-1",
            "run_id": "run-1",
            "thread_id": "t-1",
            "tenant_id": "acme",
            "user_id": "alice",
        }
    assert first["event"] == "plain arg"
    assert second["event"] == "structured" and second["answer"] == 42
    assert third["run_id"] is None, "the context is restored after the block"


async def test_context_is_per_task(json_logs: Captured) -> None:
    async def worker(name: str) -> None:
        with log_context(run_id=name):
            await asyncio.sleep(0.01)
            logging.getLogger("w").info("step")

    await asyncio.gather(worker("a"), worker("b"))
    lines = [line for line in json_logs.lines() if line["logger"] == "w"]
    assert sorted(line["run_id"] for line in lines) == ["a", "b"]


def test_ids_come_from_the_langchain_config_when_not_bound(json_logs: Captured) -> None:
    def node(_: Any) -> str:
        logging.getLogger("nodes.retrieve").info("inside a node")
        return "ok"

    RunnableLambda(node).invoke(
        None,
        {
            "metadata": {"run_id": "run-9", "tenant_id": "acme"},
            "configurable": {"thread_id": "t-9", "user_id": "bob"},
        },
    )
    [line] = json_logs.lines()
    assert (line["run_id"], line["thread_id"], line["tenant_id"], line["user_id"]) == (
        "run-9",
        "t-9",
        "acme",
        "bob",
    )


def test_pii_is_masked_in_message_extra_args_and_tracebacks(json_logs: Captured) -> None:
    log = logging.getLogger("openai._base_client")
    log.debug(
        "Request options: %s",
        {"json_data": {"messages": [{"role": "user", "content": f"I am {EMAIL}, card {CARD}"}]}},
    )
    log.info("user said", extra={"text": f"card {CARD_DASHED}", "nested": {"e": EMAIL}})
    try:
        raise ValueError(f"bad card {CARD_PLAIN} for {EMAIL}")
    except ValueError:
        log.exception("failed")
    get_logger("s").info(f"structlog {EMAIL}", card=CARD)

    text = json_logs.text
    for raw in (EMAIL, CARD, CARD_DASHED, CARD_PLAIN):
        assert raw not in text
    lines = json_logs.lines()
    assert len(lines) == 4
    assert "[EMAIL]" in lines[0]["event"] and "[CARD]" in lines[0]["event"]
    assert lines[1]["text"] == "card [CARD]" and lines[1]["nested"] == {"e": "[EMAIL]"}
    assert lines[2]["error_type"] == "ValueError"
    assert "Traceback" in lines[2]["exception"] and "[CARD]" in lines[2]["exception"]


def test_console_format_is_human_readable_and_omits_unknown_ids() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    configure_logging(fmt="console", level="INFO", stream=stream)
    try:
        with log_context(run_id="run-7"):
            logging.getLogger("nodes.agent").info("hello", extra={"k": EMAIL})
    finally:
        reset_logging()
        root.setLevel(level)
    line = stream.getvalue().strip()
    assert not line.startswith("{")
    assert "hello" in line and "run_id=run-7" in line and "k=[EMAIL]" in line
    assert "thread_id" not in line, "unknown ids are left out of console lines"


def test_production_defaults_to_json_and_reconfiguring_replaces_the_handler(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from core.settings import Settings

    monkeypatch.delenv("STEWARD_LOG_FORMAT", raising=False)
    first, second = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    level = root.level
    try:
        configure_logging(Settings(STEWARD_ENV="production"), stream=first)  # type: ignore[call-arg]
        configure_logging(Settings(STEWARD_ENV="production"), stream=second, level="INFO")  # type: ignore[call-arg]
        ours = [h for h in root.handlers if getattr(h, "_steward_observability", False)]
        assert len(ours) == 1
        logging.getLogger("z").info("once")
    finally:
        reset_logging()
        root.setLevel(level)
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["event"] == "once"
    assert structlog.is_configured() is False
