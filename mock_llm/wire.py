"""The OpenAI wire format: request bodies, error objects, chat completions and SSE chunks."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from litestar import Request, Response

from mock_llm.replies import MockReply

_ERROR_TYPES: dict[int, tuple[str, str]] = {
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
}
_ARGUMENT_FRAGMENT = 16
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
"""Headers of a streamed (server-sent events) reply."""


async def json_body(request: Request[Any, Any, Any]) -> Any:
    """Return the request body parsed as JSON, or None when it is not JSON."""
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


def dumps(value: Any) -> str:
    """Serialise JSON compactly, as OpenAI does on the wire."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def error_response(status: int, message: str, retry_after: float | None = None) -> Response[Any]:
    """Return an OpenAI-style error response."""
    kind, code = _ERROR_TYPES.get(status, ("invalid_request_error", None))
    headers = {}
    if retry_after is not None:
        headers["Retry-After"] = f"{retry_after:g}"
    return Response(
        {"error": {"message": message, "type": kind, "param": None, "code": code}},
        status_code=status,
        headers=headers,
    )


def chat_completion_id(number: int, body: Mapping[str, Any]) -> str:
    """Return the id of the `number`-th completion, salted with the request body."""
    digest = hashlib.sha256(dumps(body).encode()).hexdigest()[:12]
    return f"chatcmpl-mock{number:06d}{digest}"


def chat_completion(answer: MockReply, completion_id: str, model: str) -> dict[str, Any]:
    """Return the `chat.completion` object of a non-streamed reply."""
    return {
        "id": completion_id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_steward_mock",
        "choices": [
            {
                "index": 0,
                "message": answer.message(),
                "logprobs": None,
                "finish_reason": answer.finish_reason,
            }
        ],
        "usage": answer.usage(),
    }


def _deltas(answer: MockReply) -> list[dict[str, Any]]:
    """Split a reply into the `delta` objects of its content chunks (no finish chunk)."""
    if not answer.tool_calls:
        words = re.findall(r"\S+\s*|\s+", answer.content or "")
        return [{"role": "assistant", "content": "", "refusal": None}] + [
            {"content": word} for word in words
        ]
    deltas: list[dict[str, Any]] = []
    for index, call in enumerate(answer.tool_calls):
        header: dict[str, Any] = {
            "tool_calls": [
                {
                    "index": index,
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": ""},
                }
            ]
        }
        deltas.append({"role": "assistant", "content": None, **header} if index == 0 else header)
        args = call.arguments
        for start in range(0, len(args), _ARGUMENT_FRAGMENT):
            fragment = args[start : start + _ARGUMENT_FRAGMENT]
            deltas.append({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})
    return deltas


def stream_events(
    answer: MockReply, completion_id: str, model: str, *, include_usage: bool, truncate: bool
) -> list[bytes]:
    """Render the SSE events of a streamed reply, in the order OpenAI sends them."""
    base = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_steward_mock",
    }

    def event(payload: Mapping[str, Any] | str) -> bytes:
        data = payload if isinstance(payload, str) else dumps(payload)
        return f"data: {data}\n\n".encode()

    def choice(delta: Mapping[str, Any], finish: str | None = None) -> bytes:
        return event(
            {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
        )

    deltas = _deltas(answer)
    if truncate:
        return [choice(d) for d in deltas[: max(1, len(deltas) // 2)]]
    events = [choice(d) for d in deltas]
    events.append(choice({}, answer.finish_reason))
    if include_usage:
        events.append(event({**base, "choices": [], "usage": answer.usage()}))
    events.append(event("[DONE]"))
    return events


async def paced(events: list[bytes], delay_ms: int) -> AsyncIterator[bytes]:
    """Yield the events with `delay_ms` between them."""
    for index, item in enumerate(events):
        if index and delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        yield item


__all__ = [
    "SSE_HEADERS",
    "chat_completion",
    "chat_completion_id",
    "dumps",
    "error_response",
    "json_body",
    "paced",
    "stream_events",
]
