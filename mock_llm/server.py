"""An OpenAI-compatible mock provider (Litestar + uvicorn): the app, its model routes and `run`.

Routes: `POST /v1/chat/completions` (plain and SSE streaming, tool calls, usage),
`POST /v1/embeddings` (feature-hashed, model-free), `GET /v1/models`, `GET /health`, and the
control API for tests under `/_mock/` (`mock_llm.control`). Replies come from
`mock_llm.policy.reply`, faults from `mock_llm.faults` and the wire format from
`mock_llm.wire`; nothing here blocks the event loop (all waits are `asyncio.sleep`, and the
tokenizer is loaded in a worker thread at start-up).
"""

import asyncio
import base64
import random
import struct
from collections import deque
from collections.abc import Mapping
from typing import Any

import anyio
import uvicorn
from litestar import Litestar, Request, Response, get, post
from litestar.response import Stream

from core.tokens import get_encoding
from mock_llm.control import control_routes
from mock_llm.embeddings import EMBEDDING_TOKENIZER, embed_text, embedding_inputs
from mock_llm.policy import reply
from mock_llm.state import MockConfig, MockState
from mock_llm.usage import CHAT_ENCODING
from mock_llm.wire import (
    SSE_HEADERS,
    chat_completion,
    chat_completion_id,
    dumps,
    error_response,
    json_body,
    paced,
    stream_events,
)


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
        for name in (CHAT_ENCODING, EMBEDDING_TOKENIZER):
            await anyio.to_thread.run_sync(get_encoding, name)

    async def before_model_call() -> Response[Any] | None:
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000)
        if config.error_rate > 0 and state.rng.random() < config.error_rate:
            status = 429 if state.rng.random() < 0.5 else 500
            state.counts["random_errors"] += 1
            return error_response(
                status, "Injected random error.", retry_after=1 if status == 429 else None
            )
        return None

    @post("/v1/chat/completions", status_code=200)
    async def chat_completions(request: Request[Any, Any, Any]) -> Response[Any]:
        """Answer a chat-completions request from the scripted policy."""
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return error_response(400, "Expected a JSON object with a 'messages' list.")
        state.counts["requests"] += 1
        state.requests.append(body)

        fault = state.take_fault()
        if fault is not None and fault.kind == "status":
            return error_response(
                fault.status, f"Injected {fault.status} fault.", fault.retry_after
            )
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
        completion_id = chat_completion_id(state.counts["requests"], body)
        if body.get("stream"):
            options = body.get("stream_options")
            include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
            events = stream_events(
                answer, completion_id, model, include_usage=include_usage, truncate=truncate
            )
            return Stream(
                paced(events, config.stream_delay_ms),
                media_type="text/event-stream",
                headers=SSE_HEADERS,
            )
        payload = dumps(chat_completion(answer, completion_id, model))
        if truncate:
            return Response(payload[: len(payload) // 2], media_type="application/json")
        return Response(payload, media_type="application/json")

    @post("/v1/embeddings", status_code=200)
    async def embeddings(request: Request[Any, Any, Any]) -> Response[Any]:
        """Return deterministic feature-hashed embeddings (no model involved)."""
        body = await json_body(request)
        if not isinstance(body, dict):
            return error_response(400, "Expected a JSON object.")
        state.counts["embeddings"] += 1
        if (failure := await before_model_call()) is not None:
            return failure
        try:
            texts, tokens = embedding_inputs(body.get("input"))
        except ValueError as exc:
            return error_response(400, str(exc))
        dims = body.get("dimensions") or 256
        if not isinstance(dims, int) or not 1 <= dims <= 8192:
            return error_response(400, "dimensions must be an integer between 1 and 8192.")
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

    return Litestar(
        route_handlers=[
            chat_completions,
            embeddings,
            list_models,
            health,
            *control_routes(state),
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


__all__ = ["MockConfig", "create_mock_app", "run"]
