"""SSE framing, JSON for graph output, and strict run-body validation."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage
from langgraph.types import Interrupt
from langgraph_sdk.sse import BytesLineDecoder, SSEDecoder

from core.jsonable import dumps, to_jsonable
from server.runs.models import RunValidationError, parse_run_create
from server.sse import HEARTBEAT, format_event, format_json_event


def decode(stream: bytes, chunk: int = 7) -> list[Any]:
    """Feed `stream` to the SDK's decoder in awkward chunks; return its parts."""
    lines = BytesLineDecoder()
    sse = SSEDecoder()
    parts = []
    raw: list[Any] = []
    for i in range(0, len(stream), chunk):
        raw.extend(lines.decode(stream[i : i + chunk]))
    raw.extend(lines.flush())
    for line in raw:
        part = sse.decode(bytes(line).rstrip(b"\n"))
        if part is not None and (part.event or sse.has_data):
            parts.append(part)
    return parts


def test_event_wire_format_is_exact() -> None:
    assert format_event("values", '{"a":1}') == b'event: values\r\ndata: {"a":1}\r\n\r\n'
    assert format_event("updates", "{}", "7") == b"event: updates\r\ndata: {}\r\nid: 7\r\n\r\n"
    assert HEARTBEAT == b": heartbeat\r\n\r\n"


def test_sdk_decoder_reads_our_stream() -> None:
    stream = b"".join(
        [
            format_json_event("metadata", {"run_id": "r1", "attempt": 1}, "0"),
            HEARTBEAT,
            format_json_event("values", {"messages": [HumanMessage("hi\nthere", id="m1")]}, "1"),
            format_json_event("messages", [AIMessageChunk(content="to"), {"langgraph_node": "a"}]),
            format_json_event("error", {"error": "ValueError", "message": "boom"}),
        ]
    )
    parts = decode(stream)
    assert [p.event for p in parts] == ["metadata", "values", "messages", "error"]
    assert parts[0].data == {"run_id": "r1", "attempt": 1}
    assert parts[0].id == "0"
    assert parts[1].data["messages"][0]["content"] == "hi\nthere"
    assert parts[1].data["messages"][0]["type"] == "human"
    chunk, meta = parts[2].data
    assert chunk["type"] == "AIMessageChunk" and chunk["content"] == "to"
    assert meta == {"langgraph_node": "a"}
    assert parts[3].data == {"error": "ValueError", "message": "boom"}


def test_graph_objects_become_json() -> None:
    value = {
        "__interrupt__": (
            Interrupt(value={"action_requests": [{"amount": Decimal("700.00")}]}, id="abc"),
        ),
        "messages": [AIMessage(content="ok", id="x")],
        "tags": {"b"},
        "blob": b"\xffbytes",
    }
    out = to_jsonable(value)
    assert out["__interrupt__"] == [
        {"value": {"action_requests": [{"amount": "700.00"}]}, "id": "abc"}
    ]
    assert out["messages"][0]["type"] == "ai" and out["messages"][0]["content"] == "ok"
    assert out["tags"] == ["b"]
    assert out["blob"].endswith("bytes")
    assert to_jsonable(object()).startswith("<object")


def test_nul_characters_survive_postgres_jsonb() -> None:
    text = dumps({"a": "x\x00y", "b": "\\u0000"})
    assert "\\u0000" not in text.replace("\\\\u0000", "")
    assert orjson.loads(text) == {"a": "x\ufffdy", "b": "\\u0000"}


def test_multiline_data_is_split_into_data_lines() -> None:
    [part] = decode(format_event("custom", '"a"\n'))
    assert part.data == "a"


# --------------------------------------------------------------------------- run bodies


def test_sdk_defaults_are_accepted() -> None:
    body = parse_run_create(
        {
            "input": {"messages": []},
            "assistant_id": "agent",
            "stream_mode": "values",
            "stream_subgraphs": False,
            "stream_resumable": False,
            "config": None,
        },
        stateless=False,
    )
    assert body.stream_mode == ["values"]
    assert body.multitask_strategy == "enqueue"
    assert body.if_not_exists == "reject"
    assert body.on_disconnect == "continue"


@pytest.mark.parametrize(
    ("body", "durability"),
    [
        ({}, None),
        ({"durability": "exit"}, "exit"),
        ({"durability": "sync"}, "sync"),
        ({"checkpoint_during": False}, "exit"),
        ({"checkpoint_during": True}, "async"),
        ({"checkpoint_during": False, "durability": "sync"}, "sync"),
    ],
)
def test_durability_is_the_clients_choice_as_in_langgraph_api(
    body: dict[str, Any], durability: str | None
) -> None:
    assert parse_run_create(body, stateless=False).durability == durability


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"webhook": "http://x"}, "webhook"),
        ({"langsmith_tracer": {"project_name": "p"}}, "LangSmith"),
        ({"feedback_keys": ["a"]}, "feedback_keys"),
        ({"durability": "never"}, "durability"),
        ({"checkpoint_during": "no"}, "checkpoint_during"),
        ({"stream_mode": ["tools"]}, "'tools' is not supported"),
        ({"stream_mode": "lifecycle"}, "'lifecycle' is not supported"),
        ({"stream_mode": ["nonsense"]}, "stream_mode"),
        ({"stream_mode": []}, "at least one"),
        ({"multitask_strategy": "later"}, "multitask_strategy"),
        ({"command": {}}, "needs resume, update or goto"),
        ({"on_completion": "keep"}, "stateless"),
        ({"after_seconds": -1}, "after_seconds"),
        ([], "JSON object"),
    ],
)
def test_unsupported_or_invalid_fields_fail_clearly(body: Any, fragment: str) -> None:
    with pytest.raises(RunValidationError) as info:
        parse_run_create(body, stateless=False)
    assert fragment in info.value.detail


def test_fields_a_newer_client_may_send_are_ignored_known_ones_still_checked() -> None:
    run = parse_run_create(
        {
            "surprise": 1,
            "command": {"resume": 1, "oops": 2},
            "checkpoint": {"checkpoint_id": "c1", "later": True},
        },
        stateless=False,
    )
    assert run.command is not None and run.command.resume == 1
    assert run.checkpoint is not None and run.checkpoint.checkpoint_id == "c1"
    with pytest.raises(RunValidationError, match="multitask_strategy"):
        parse_run_create({"surprise": 1, "multitask_strategy": "later"}, stateless=False)


def test_a_command_wins_over_an_input_as_agent_chat_ui_sends_them() -> None:
    run = parse_run_create(
        {
            "input": {},
            "command": {"resume": {"decisions": [{"type": "approve"}]}},
            "stream_mode": ["messages-tuple", "values", "custom"],
            "on_disconnect": "cancel",
        },
        stateless=False,
    )
    assert run.input is None and run.is_resume


def test_stateless_only_and_thread_only_fields() -> None:
    parse_run_create({"on_completion": "keep"}, stateless=True)
    for body in (
        {"multitask_strategy": "reject"},
        {"checkpoint_id": "x"},
        {"command": {"resume": 1}},
    ):
        with pytest.raises(RunValidationError):
            parse_run_create(body, stateless=True)


def test_checkpoint_reference() -> None:
    body = parse_run_create({"checkpoint_id": "c1"}, stateless=False)
    assert body.start_checkpoint is not None
    assert body.start_checkpoint.checkpoint_id == "c1"
    body = parse_run_create(
        {"checkpoint": {"checkpoint_id": "c2", "checkpoint_ns": ""}}, stateless=False
    )
    assert body.start_checkpoint is not None and body.start_checkpoint.checkpoint_id == "c2"
    assert parse_run_create({}, stateless=False).start_checkpoint is None
