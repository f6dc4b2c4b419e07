"""An OpenAI-compatible mock provider (Litestar + uvicorn) with deterministic fault injection.

Routes: `POST /v1/chat/completions` (plain and SSE streaming, tool calls, usage),
`POST /v1/embeddings` (feature-hashed, model-free), `GET /v1/models`, `GET /health`, and a
control API for tests under `/_mock/` (queued faults, request log, stats). Replies come from
`mock_llm.policy.reply`; nothing here blocks the event loop (all waits are
`asyncio.sleep`, and the tokenizer is loaded in a worker thread at start-up).
"""

import asyncio
import base64
import hashlib
import json
import math
import random
import re
import struct
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import anyio
import uvicorn
from litestar import Litestar, Request, Response, delete, get, post
from litestar.response import Stream

from core.tokens import count_text_tokens, get_encoding
from mock_llm.policy import MockReply, reply

FaultKind = Literal["status", "timeout", "truncate", "malformed_tool_args"]
_FAULT_KINDS: frozenset[str] = frozenset({"status", "timeout", "truncate", "malformed_tool_args"})
_ERROR_TYPES: dict[int, tuple[str, str]] = {
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
}
_ARGUMENT_FRAGMENT = 16
_EMBEDDING_TOKENIZER = "cl100k_base"
_WORD = re.compile(r"\w+")
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True, slots=True, kw_only=True)
class MockConfig:
    """Process-level behaviour of the mock provider (the CLI options)."""

    latency_ms: int = 0
    """Sleep before answering every model request (chat and embeddings)."""
    error_rate: float = 0.0
    """Fraction of model requests answered 500 or 429, drawn from a RNG seeded with `seed`."""
    stream_delay_ms: int = 0
    """Pause between streamed chunks."""
    seed: int = 0
    max_logged_requests: int = 1000
    models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "text-embedding-3-small")
    """Ids listed by `GET /v1/models` (any model name is accepted and echoed)."""


@dataclass(slots=True, kw_only=True)
class Fault:
    """A queued fault; it applies to the next `count` chat requests."""

    kind: FaultKind
    count: int = 1
    status: int = 500
    retry_after: float | None = None
    delay_s: float = 5.0

    @classmethod
    def parse(cls, raw: Any) -> "Fault":
        """Validate one fault from the control API.

        Raises:
            ValueError: If the fault is malformed.
        """
        if not isinstance(raw, Mapping):
            raise ValueError("each fault must be a JSON object")
        kind = raw.get("kind")
        if kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {sorted(_FAULT_KINDS)}")
        count = raw.get("count", 1)
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            raise ValueError("count must be a positive integer")
        fault = cls(kind=kind, count=count)
        if kind == "status":
            status = raw.get("status", 500)
            if not isinstance(status, int) or not 400 <= status <= 599:
                raise ValueError("status must be an HTTP error status (e.g. 429, 500, 503)")
            fault.status = status
            retry_after = raw.get("retry_after", 1 if status == 429 else None)
            if retry_after is not None and (
                not isinstance(retry_after, int | float) or retry_after < 0
            ):
                raise ValueError("retry_after must be a non-negative number of seconds")
            fault.retry_after = retry_after
        if kind == "timeout":
            delay = raw.get("delay_s", 5.0)
            if not isinstance(delay, int | float) or delay < 0:
                raise ValueError("delay_s must be a non-negative number of seconds")
            fault.delay_s = float(delay)
        return fault


@dataclass(slots=True)
class MockState:
    """Mutable server state; touched only from the event loop, so it needs no locks."""

    config: MockConfig
    rng: random.Random
    faults: deque[Fault] = field(default_factory=deque)
    requests: deque[dict[str, Any]] = field(default_factory=deque)
    counts: Counter[str] = field(default_factory=Counter)

    def take_fault(self, *, tool_calls: bool | None = None) -> Fault | None:
        """Consume one use of the head fault, if it applies.

        `malformed_tool_args` applies only to replies with tool calls, so it is taken only when
        `tool_calls` is True; the other kinds are taken when `tool_calls` is None.
        """
        if not self.faults:
            return None
        head = self.faults[0]
        wants_reply = head.kind == "malformed_tool_args"
        if wants_reply != (tool_calls is not None) or (wants_reply and not tool_calls):
            return None
        head.count -= 1
        if head.count <= 0:
            self.faults.popleft()
        self.counts["faults_served"] += 1
        self.counts[f"faults.{head.kind}"] += 1
        return head


def create_mock_app(config: MockConfig | None = None) -> Litestar:
    """Build the mock provider's ASGI app.

    Args:
        config: Latency, random errors, stream pacing and RNG seed; defaults to none of them.
    """
    config = config or MockConfig()
    state = MockState(
        config=config,
        rng=random.Random(config.seed),  # noqa: S311 - fault injection, not cryptography
        requests=deque(maxlen=config.max_logged_requests),
    )

    async def load_tokenizers() -> None:
        for name in ("o200k_base", _EMBEDDING_TOKENIZER):
            await anyio.to_thread.run_sync(get_encoding, name)

    async def before_model_call() -> Response[Any] | None:
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000)
        if config.error_rate > 0 and state.rng.random() < config.error_rate:
            status = 429 if state.rng.random() < 0.5 else 500
            state.counts["random_errors"] += 1
            return _error(
                status, "Injected random error.", retry_after=1 if status == 429 else None
            )
        return None

    @post("/v1/chat/completions", status_code=200)
    async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
        """Answer a chat-completions request from the scripted policy."""
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return _error(400, "Expected a JSON object with a 'messages' list.")
        state.counts["requests"] += 1
        state.requests.append(body)

        fault = state.take_fault()
        if fault is not None and fault.kind == "status":
            return _error(fault.status, f"Injected {fault.status} fault.", fault.retry_after)
        if fault is not None and fault.kind == "timeout":
            await asyncio.sleep(fault.delay_s)
        if (failure := await before_model_call()) is not None:
            return failure

        answer = reply(body)
        # One fault per request: a malformed-arguments fault waits while another one applies.
        if fault is None and state.take_fault(tool_calls=bool(answer.tool_calls)) is not None:
            answer = answer.with_malformed_arguments()
        truncate = fault is not None and fault.kind == "truncate"
        model = str(body.get("model") or "mock")
        completion_id = _completion_id(state.counts["requests"], body)
        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
            events = _stream_events(
                answer, completion_id, model, include_usage=include_usage, truncate=truncate
            )
            return Stream(
                _paced(events, config.stream_delay_ms),
                media_type="text/event-stream",
                headers=_SSE_HEADERS,
            )
        payload = _dumps(_completion(answer, completion_id, model))
        if truncate:
            return Response(payload[: len(payload) // 2], media_type="application/json")
        return Response(payload, media_type="application/json")

    @post("/v1/embeddings", status_code=200)
    async def embeddings(request: Request[Any, Any, Any]) -> Response[Any]:
        """Return deterministic feature-hashed embeddings (no model involved)."""
        body = await _json_body(request)
        if not isinstance(body, dict):
            return _error(400, "Expected a JSON object.")
        state.counts["embeddings"] += 1
        if (failure := await before_model_call()) is not None:
            return failure
        try:
            texts, tokens = _embedding_inputs(body.get("input"))
        except ValueError as exc:
            return _error(400, str(exc))
        dims = body.get("dimensions") or 256
        if not isinstance(dims, int) or not 1 <= dims <= 8192:
            return _error(400, "dimensions must be an integer between 1 and 8192.")
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embed_text(text, dims)
            encoded: Any = vector
            if as_base64:
                encoded = base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        return Response(
            {
                "object": "list",
                "data": data,
                "model": str(body.get("model") or "mock-embedding"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    @get("/v1/models")
    async def list_models() -> dict[str, Any]:
        """List the model ids the mock advertises."""
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "steward-mock"}
                for m in config.models
            ],
        }

    @get("/health")
    async def health() -> dict[str, str]:
        """Liveness probe."""
        return {"status": "ok"}

    @post("/_mock/faults", status_code=200)
    async def add_faults(request: Request[Any, Any, Any]) -> Response[Any]:
        """Queue faults (a JSON list, or one object); they apply FIFO to later chat requests."""
        body = await _json_body(request)
        raw = body if isinstance(body, list) else [body]
        try:
            parsed = [Fault.parse(item) for item in raw]
        except ValueError as exc:
            return _error(400, str(exc))
        state.faults.extend(parsed)
        return Response({"queued": [asdict(f) for f in state.faults]})

    @get("/_mock/faults")
    async def list_faults() -> list[dict[str, Any]]:
        """Return the faults still queued."""
        return [asdict(f) for f in state.faults]

    @delete("/_mock/faults")
    async def clear_faults() -> None:
        """Drop every queued fault."""
        state.faults.clear()

    @get("/_mock/requests")
    async def list_requests() -> list[dict[str, Any]]:
        """Return the logged chat request bodies, oldest first (at most the last 1000)."""
        return list(state.requests)

    @delete("/_mock/requests")
    async def clear_requests() -> None:
        """Forget the logged chat requests."""
        state.requests.clear()

    @get("/_mock/stats")
    async def stats() -> dict[str, Any]:
        """Return request and fault counters."""
        counts = {
            key: state.counts[key]
            for key in ("requests", "embeddings", "faults_served", "random_errors")
        }
        by_kind = {
            key.removeprefix("faults."): value
            for key, value in sorted(state.counts.items())
            if key.startswith("faults.")
        }
        return {**counts, "faults_by_kind": by_kind, "queued_faults": len(state.faults)}

    return Litestar(
        route_handlers=[
            chat_completions,
            embeddings,
            list_models,
            health,
            add_faults,
            list_faults,
            clear_faults,
            list_requests,
            clear_requests,
            stats,
        ],
        on_startup=[load_tokenizers],
        openapi_config=None,
    )


def run(
    host: str = "127.0.0.1",
    port: int = 8399,
    *,
    latency_ms: int = 0,
    error_rate: float = 0.0,
    stream_delay_ms: int = 0,
    seed: int = 0,
) -> None:
    """Serve the mock provider with uvicorn until interrupted.

    Args:
        host: Interface to bind.
        port: TCP port.
        latency_ms: Sleep before answering each model request.
        error_rate: Fraction (0..1) of model requests answered 500 or 429.
        stream_delay_ms: Pause between streamed chunks.
        seed: Seed of the RNG behind `error_rate`.

    Raises:
        ValueError: If an option is out of range.
    """
    if not 0.0 <= error_rate <= 1.0:
        raise ValueError("error_rate must be between 0 and 1")
    if latency_ms < 0 or stream_delay_ms < 0:
        raise ValueError("latency_ms and stream_delay_ms must not be negative")
    config = MockConfig(
        latency_ms=latency_ms, error_rate=error_rate, stream_delay_ms=stream_delay_ms, seed=seed
    )
    uvicorn.run(
        create_mock_app(config),
        host=host,
        port=port,
        log_level="info",
        access_log=False,
        timeout_graceful_shutdown=2,
    )


def embed_text(text: str, dims: int = 256) -> list[float]:
    """Embed text by signed feature hashing of its lower-cased word tokens, L2-normalised.

    Empty text maps to the first unit vector so every embedding has length 1.
    """
    vector = [0.0] * dims
    for word in _WORD.findall(text.lower()):
        digest = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "little")
        vector[digest % dims] += -1.0 if digest >> 63 else 1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:
        vector[0] = 1.0
        return vector
    return [v / norm for v in vector]


# --------------------------------------------------------------------------- helpers


async def _json_body(request: Request[Any, Any, Any]) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        return None


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _error(status: int, message: str, retry_after: float | None = None) -> Response[Any]:
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


def _completion_id(number: int, body: Mapping[str, Any]) -> str:
    digest = hashlib.sha256(_dumps(body).encode()).hexdigest()[:12]
    return f"chatcmpl-mock{number:06d}{digest}"


def _completion(answer: MockReply, completion_id: str, model: str) -> dict[str, Any]:
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


def _stream_events(
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
        data = payload if isinstance(payload, str) else _dumps(payload)
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


async def _paced(events: list[bytes], delay_ms: int) -> AsyncIterator[bytes]:
    for index, item in enumerate(events):
        if index and delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000)
        yield item


def _embedding_inputs(raw: Any) -> tuple[list[str], int]:
    """Normalise `input` (text, texts, token ids or lists of token ids) to texts and a count."""
    encoding = get_encoding(_EMBEDDING_TOKENIZER)
    if isinstance(raw, str):
        raw = [raw]
    if isinstance(raw, list) and raw and all(isinstance(t, int) for t in raw):
        raw = [raw]
    if not isinstance(raw, list) or not raw:
        raise ValueError("input must be a non-empty string, list of strings or token lists.")
    texts: list[str] = []
    tokens = 0
    for item in raw:
        if isinstance(item, str):
            texts.append(item)
            tokens += count_text_tokens(item, encoding)
        elif isinstance(item, list) and all(isinstance(t, int) for t in item):
            try:
                texts.append(encoding.decode(item))
            except (KeyError, ValueError, OverflowError) as exc:
                raise ValueError("input contains token ids outside the vocabulary.") from exc
            tokens += len(item)
        else:
            raise ValueError("input items must be strings or lists of token ids.")
    return texts, tokens


__all__ = ["Fault", "MockConfig", "MockState", "create_mock_app", "embed_text", "run"]
