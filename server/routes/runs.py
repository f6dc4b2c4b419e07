"""Runs routes, as langgraph-sdk 0.4.x calls them (`client.runs.*`).

Background (`POST .../runs`), streaming (`.../runs/stream`, SSE) and waiting
(`.../runs/wait`) runs all go through `RunService.create` and the Postgres queue; streams and
waits follow the run's `run_events`, so any replica can serve them.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, Literal

import orjson
from litestar import Request, Response, delete, get, post
from litestar.params import Parameter
from litestar.response import Stream
from litestar.types import ControllerRouterHandler

from core.errors import Unprocessable
from core.identity import Principal
from core.jsonable import dumps
from server.edge import MAX_OFFSET, MAX_PAGE
from server.openapi import api_errors
from server.runs.background import spawn_background
from server.runs.models import (
    SUPPORTED_STREAM_MODES,
    Run,
    RunCreate,
    RunValidationError,
    parse_run_create,
)
from server.runs.queries import parse_uuid
from server.runs.service import RunService
from server.sse import HEARTBEAT, HEARTBEAT_INTERVAL_S, format_event, format_json_event

WAIT_KEEPALIVE = b"\n"
"""Sent every `HEARTBEAT_INTERVAL_S` while `/wait` and `/join` block (JSON ignores it)."""
RUN_DELETED = dumps(
    {"__error__": {"error": "RunDeleted", "message": "the run was rolled back or deleted"}}
)
"""What `/wait` returns when the run disappeared (rolled back, its thread deleted)."""
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
CREATE_ERRORS = api_errors(403, 404, 409, body=True)
"""What creating a run can answer (`RunCreator.create`): 403 steering without role admin or
resuming an approval without role approver, 404 unknown thread or assistant, 409 busy thread
or nothing to resume, 422 invalid body, 429 budget spent (and the rate limit)."""
RUN_FIELDS = frozenset(Run.model_fields)


async def _body(request: Request[Any, Any, Any], *, stateless: bool) -> RunCreate:
    raw = await request.body()
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise Unprocessable(f"malformed JSON body: {exc}") from None
    try:
        return parse_run_create(data, stateless=stateless)
    except RunValidationError as exc:
        raise Unprocessable(exc.detail) from None


def idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    """The client's `Idempotency-Key` header: a re-send with it is answered by its first run.

    Raises:
        Unprocessable: empty, longer than 200 characters, or not printable ASCII.
    """
    raw = request.headers.get("idempotency-key")
    if raw is None:
        return None
    key = raw.strip()
    if not key or len(key) > 200 or not key.isascii() or not key.isprintable():
        raise Unprocessable("Idempotency-Key must be 1 to 200 printable ASCII characters")
    return f"key:{key}"


def _run_url(run: Run) -> str:
    return f"/threads/{run.thread_id}/runs/{run.run_id}"


async def _sse(
    service: RunService,
    run: Run,
    *,
    after_seq: int | None,
    resumable: bool,
    names: frozenset[str] | None,
    cancel_on_disconnect: bool,
    temporary: bool,
    lead: bytes = b"",
) -> AsyncIterator[bytes]:
    run_id = uuid.UUID(run.run_id)
    finished = False
    last = time.monotonic()
    try:
        if lead:
            yield lead
        async with aclosing(service.events(run_id, after_seq=after_seq, names=names)) as events:
            async for item in events:
                now = time.monotonic()
                if item is None:
                    if now - last >= HEARTBEAT_INTERVAL_S:
                        last = now
                        yield HEARTBEAT
                    continue
                last = now
                yield format_event(item.event, item.data, str(item.seq) if resumable else None)
        finished = True
    finally:
        _after_response(
            service,
            run,
            finished=finished,
            cancel_on_disconnect=cancel_on_disconnect,
            temporary=temporary,
        )


async def _result(
    service: RunService, run: Run, *, cancel_on_disconnect: bool, temporary: bool
) -> AsyncIterator[bytes]:
    run_id = uuid.UUID(run.run_id)
    finished = False
    last = time.monotonic()
    try:
        async with aclosing(service.outcome(run_id)) as outcome:
            async for item in outcome:
                now = time.monotonic()
                if item is None:
                    if now - last >= HEARTBEAT_INTERVAL_S:
                        last = now
                        yield WAIT_KEEPALIVE
                    continue
                status, output = item
                if status == "deleted":
                    output = RUN_DELETED
                elif output is None:  # cancelled before it started: the thread's values
                    output = await service.current_output(uuid.UUID(str(run.thread_id)))
                yield output.encode()  # stored as JSON text by the run's end, sent as it is
        finished = True
    finally:
        _after_response(
            service,
            run,
            finished=finished,
            cancel_on_disconnect=cancel_on_disconnect,
            temporary=temporary,
        )


def _after_response(
    service: RunService,
    run: Run,
    *,
    finished: bool,
    cancel_on_disconnect: bool,
    temporary: bool,
) -> None:
    # Runs outside the (possibly cancelled) response task.
    if not finished and cancel_on_disconnect:
        spawn_background(service.cancel_by_id(uuid.UUID(run.run_id)), "cancel on disconnect")
    if finished and temporary and run.kwargs.get("on_completion") == "delete":
        spawn_background(
            service.discard_temporary_thread(uuid.UUID(str(run.thread_id))),
            "deleting a stateless run's thread",
        )


def _stream_response(service: RunService, run: Run, body: RunCreate, *, temporary: bool) -> Stream:
    url = _run_url(run)
    return Stream(
        _sse(
            service,
            run,
            after_seq=-1,
            resumable=body.stream_resumable,
            names=None,
            cancel_on_disconnect=body.on_disconnect == "cancel",
            temporary=temporary,
        ),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, "Location": f"{url}/stream", "Content-Location": url},
    )


def _wait_response(service: RunService, run: Run, body: RunCreate, *, temporary: bool) -> Stream:
    url = _run_url(run)
    return Stream(
        _result(
            service, run, cancel_on_disconnect=body.on_disconnect == "cancel", temporary=temporary
        ),
        media_type="application/json",
        headers={"Location": f"{url}/join", "Content-Location": url},
    )


def _created(run: Run) -> Response[dict[str, Any]]:
    return Response(run.public(), status_code=200, headers={"Content-Location": _run_url(run)})


# --------------------------------------------------------------------------- stateful


@post(
    "/threads/{thread_id:str}/runs",
    status_code=200,
    summary="Create a background run",
    responses=CREATE_ERRORS,
)
async def create_run(
    thread_id: str, principal: Principal, run_service: RunService, request: Request[Any, Any, Any]
) -> Response[dict[str, Any]]:
    """Queue a run on a thread; returns it `pending` (`Content-Location` names it)."""
    service = run_service
    body = await _body(request, stateless=False)
    return _created(
        await service.create(principal, thread_id, body, idempotency_key=idempotency_key(request))
    )


@post(
    "/threads/{thread_id:str}/runs/stream",
    status_code=200,
    summary="Create a run, stream it",
    responses=CREATE_ERRORS,
)
async def stream_run(
    thread_id: str, principal: Principal, run_service: RunService, request: Request[Any, Any, Any]
) -> Stream:
    """Queue a run and stream its events as SSE (first event `metadata`)."""
    service = run_service
    body = await _body(request, stateless=False)
    run = await service.create(
        principal, thread_id, body, idempotency_key=idempotency_key(request), streamed=True
    )
    return _stream_response(service, run, body, temporary=False)


@post(
    "/threads/{thread_id:str}/runs/wait",
    status_code=200,
    summary="Create a run, wait for it",
    responses=CREATE_ERRORS,
)
async def wait_run(
    thread_id: str, principal: Principal, run_service: RunService, request: Request[Any, Any, Any]
) -> Stream:
    """Queue a run and answer its final values (`__interrupt__` / `__error__` merged in)."""
    service = run_service
    body = await _body(request, stateless=False)
    run = await service.create(principal, thread_id, body, idempotency_key=idempotency_key(request))
    return _wait_response(service, run, body, temporary=False)


@get("/threads/{thread_id:str}/runs", summary="List a thread's runs", responses=api_errors(404))
async def list_runs(
    thread_id: str,
    principal: Principal,
    run_service: RunService,
    limit: int = Parameter(default=10, ge=1, le=MAX_PAGE),
    offset: int = Parameter(default=0, ge=0, le=MAX_OFFSET),
    status: Literal["pending", "running", "error", "success", "timeout", "interrupted"]
    | None = None,
    select: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Runs of a thread, newest first."""
    fields = [f for f in (select or []) if f]
    unknown = sorted(set(fields) - RUN_FIELDS)
    if unknown:
        raise Unprocessable(f"select: unknown field(s) {', '.join(unknown)}")
    runs = await run_service.list_runs(
        principal, thread_id, limit=limit, offset=offset, status=status
    )
    out = [r.public() for r in runs]
    if fields:
        out = [{k: v for k, v in r.items() if k in fields} for r in out]
    return out


@get("/threads/{thread_id:str}/runs/{run_id:str}", summary="Get a run", responses=api_errors(404))
async def get_run(
    thread_id: str, run_id: str, principal: Principal, run_service: RunService
) -> dict[str, Any]:
    """One run of a thread."""
    return (await run_service.get(principal, thread_id, run_id)).public()


@delete(
    "/threads/{thread_id:str}/runs/{run_id:str}",
    status_code=204,
    summary="Delete a run",
    responses=api_errors(404, 409),
)
async def delete_run(
    thread_id: str, run_id: str, principal: Principal, run_service: RunService
) -> None:
    """Delete a finished run (409 while it is pending or running)."""
    await run_service.delete(principal, thread_id, run_id)


@get(
    "/threads/{thread_id:str}/runs/{run_id:str}/join",
    summary="Wait for a run's result",
    responses=api_errors(404),
)
async def join_run(
    thread_id: str, run_id: str, principal: Principal, run_service: RunService
) -> Stream:
    """Block until the run ends; answer its final values (whitespace keeps the line alive)."""
    service = run_service
    run = await service.get(principal, thread_id, run_id)
    return Stream(
        _result(service, run, cancel_on_disconnect=False, temporary=False),
        media_type="application/json",
    )


@get(
    "/threads/{thread_id:str}/runs/{run_id:str}/stream",
    summary="Join a run's stream",
    responses=api_errors(404),
)
async def join_stream(
    thread_id: str,
    run_id: str,
    principal: Principal,
    run_service: RunService,
    request: Request[Any, Any, Any],
    stream_mode: list[str] | None = None,
    cancel_on_disconnect: bool = False,
) -> Stream:
    """Follow a run's events; `Last-Event-ID` replays the stored ones after that id."""
    service = run_service
    run = await service.get(principal, thread_id, run_id)
    modes = [m for m in (stream_mode or []) if m]
    unknown = sorted(set(modes) - set(SUPPORTED_STREAM_MODES))
    if unknown:
        raise Unprocessable(f"stream_mode: unsupported mode(s) {', '.join(unknown)}")
    names = (
        frozenset(
            {"messages" if m == "messages-tuple" else m for m in modes} | {"metadata", "error"}
        )
        if modes
        else None
    )
    return await _follow(
        service,
        run,
        request,
        names=names,
        cancel_on_disconnect=cancel_on_disconnect,
        headers={"Location": f"{_run_url(run)}/stream"},
    )


async def _follow(
    service: RunService,
    run: Run,
    request: Request[Any, Any, Any],
    *,
    names: frozenset[str] | None,
    cancel_on_disconnect: bool,
    headers: dict[str, str],
) -> Stream:
    """An existing run's events from the live edge, or after `Last-Event-ID`, as SSE.

    A stream joined at the live edge of a run that has started begins, like every run stream,
    with a `metadata` event (run id, attempt); it carries no `id`, so a reconnect's
    `Last-Event-ID` still names the last stored event.
    """
    last_event_id = request.headers.get("last-event-id")
    after = await service.start_seq(uuid.UUID(run.run_id), last_event_id)
    # None: a deferred run whose worker is storing its events (it has started).
    joined_late = not (last_event_id or "").strip() and (after is None or after >= 0)
    lead = (
        format_json_event("metadata", {"run_id": run.run_id, "attempt": run.attempt})
        if joined_late and (names is None or "metadata" in names)
        else b""
    )
    return Stream(
        _sse(
            service,
            run,
            after_seq=after,
            resumable=bool(run.kwargs.get("stream_resumable")),
            names=names,
            cancel_on_disconnect=cancel_on_disconnect,
            temporary=False,
            lead=lead,
        ),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **headers},
    )


THREAD_STREAM_MODES = frozenset({"run_modes"})
"""The thread stream modes served: the joined run's events in its own modes."""


@get(
    "/threads/{thread_id:str}/stream",
    summary="Join a thread's current run",
    responses=api_errors(404),
)
async def join_thread_stream(
    thread_id: str,
    principal: Principal,
    run_service: RunService,
    request: Request[Any, Any, Any],
    stream_mode: list[str] | None = None,
) -> Stream:
    """`joinStream`: follow the thread's current run, in the modes it was started with.

    The current run is the running one, else the oldest pending one, else the latest. The
    stream ends with that run (the LangGraph server keeps a thread's stream open for the runs
    that follow; reconnect to follow the next). A thread without runs answers an empty
    stream. Only the `run_modes` thread mode is served (`lifecycle` and `state_update`: 422).
    `Last-Event-ID` replays that run's stored events after that id.
    """
    unknown = sorted(set(stream_mode or []) - THREAD_STREAM_MODES)
    if unknown:
        raise Unprocessable(
            f"stream_mode: thread stream mode(s) {', '.join(unknown)} not served; served: run_modes"
        )
    run = await _current_run(run_service, principal, thread_id)
    if run is None:
        return Stream(iter(()), media_type="text/event-stream", headers=SSE_HEADERS)
    return await _follow(
        run_service,
        run,
        request,
        names=None,
        cancel_on_disconnect=False,
        headers={"Content-Location": _run_url(run)},
    )


async def _current_run(service: RunService, principal: Principal, thread_id: str) -> Run | None:
    """The thread's running run, else its oldest pending one, else its latest (404: hidden)."""
    running = await service.list_runs(principal, thread_id, limit=1, status="running")
    if running:
        return running[0]
    pending = await service.list_runs(principal, thread_id, limit=MAX_PAGE, status="pending")
    if pending:
        return pending[-1]  # newest first: the last is the oldest
    latest = await service.list_runs(principal, thread_id, limit=1)
    return latest[0] if latest else None


@post(
    "/threads/{thread_id:str}/runs/{run_id:str}/cancel",
    status_code=204,
    summary="Cancel a run",
    responses=api_errors(404),
)
async def cancel_run(
    thread_id: str,
    run_id: str,
    principal: Principal,
    run_service: RunService,
    wait: bool = False,
    action: Literal["interrupt", "rollback"] = "interrupt",
) -> None:
    """Cancel a pending or running run on whichever replica runs it (`wait=1`: until ended).

    404 when the run is missing or has already ended, as the LangGraph server answers.
    """
    await run_service.cancel(principal, thread_id, run_id, action=action, wait=wait)


@post(
    "/runs/cancel",
    status_code=204,
    summary="Cancel several runs",
    responses=api_errors(404, body=True),
)
async def cancel_runs(
    principal: Principal,
    run_service: RunService,
    request: Request[Any, Any, Any],
    action: Literal["interrupt", "rollback"] = "interrupt",
) -> None:
    """Cancel runs by `run_ids` (with their `thread_id`) or a thread's runs by `status`."""
    raw = await request.body()
    try:
        data = orjson.loads(raw) if raw.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise Unprocessable(f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise Unprocessable("the request body must be a JSON object")
    unknown = sorted(set(data) - {"thread_id", "run_ids", "status"})
    if unknown:
        raise Unprocessable(f"unknown field(s): {', '.join(unknown)}")
    status = data.get("status")
    if status not in (None, "pending", "running", "all"):
        raise Unprocessable("status must be one of pending, running, all")
    run_ids = data.get("run_ids")
    if run_ids is not None and not (
        isinstance(run_ids, list) and all(isinstance(r, str) for r in run_ids)
    ):
        raise Unprocessable("run_ids must be a list of run ids")
    thread_id = data.get("thread_id")
    if thread_id is not None:
        parse_uuid(str(thread_id), "thread")
    await run_service.cancel_many(
        principal, thread_id=thread_id, run_ids=run_ids, status=status, action=action
    )


# --------------------------------------------------------------------------- stateless


@post(
    "/runs",
    status_code=200,
    summary="Create a stateless background run",
    responses=CREATE_ERRORS,
)
async def create_stateless_run(
    principal: Principal, run_service: RunService, request: Request[Any, Any, Any]
) -> Response[dict[str, Any]]:
    """Queue a run on a temporary thread (deleted after it ends unless `on_completion=keep`)."""
    service = run_service
    body = await _body(request, stateless=True)
    return _created(
        await service.create(principal, None, body, idempotency_key=idempotency_key(request))
    )


MAX_BATCH = 100
"""Most runs one `POST /runs/batch` creates."""


@post(
    "/runs/batch",
    status_code=200,
    summary="Create a batch of stateless background runs",
    responses=CREATE_ERRORS,
)
async def create_stateless_batch(
    principal: Principal, run_service: RunService, request: Request[Any, Any, Any]
) -> list[dict[str, Any]]:
    """Queue up to 100 stateless runs (`runs.create_batch`); answers them in order.

    Every item is validated before any is created (422 names the item). Items are created in
    order; a refusal while creating (a spent budget, say) answers that error, and the runs
    created before it stay queued. An item naming a `thread_id` is refused: a batch creates
    stateless runs, as the SDKs document.
    """
    raw = await request.body()
    try:
        items = orjson.loads(raw) if raw.strip() else None
    except orjson.JSONDecodeError as exc:
        raise Unprocessable(f"malformed JSON body: {exc}") from None
    if not isinstance(items, list) or not items:
        raise Unprocessable("the body must be a non-empty JSON array of run bodies")
    if len(items) > MAX_BATCH:
        raise Unprocessable(f"a batch holds at most {MAX_BATCH} runs, got {len(items)}")
    bodies: list[RunCreate] = []
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("thread_id") is not None:
            raise Unprocessable(f"item {i}: thread_id: a batch creates stateless runs")
        try:
            bodies.append(parse_run_create(item, stateless=True))
        except RunValidationError as exc:
            raise Unprocessable(f"item {i}: {exc.detail}") from None
    return [(await run_service.create(principal, None, body)).public() for body in bodies]


@post(
    "/runs/stream",
    status_code=200,
    summary="Create a stateless run, stream it",
    responses=CREATE_ERRORS,
)
async def stream_stateless_run(
    principal: Principal, run_service: RunService, request: Request[Any, Any, Any]
) -> Stream:
    """Run on a temporary thread and stream the events as SSE."""
    service = run_service
    body = await _body(request, stateless=True)
    run = await service.create(
        principal, None, body, idempotency_key=idempotency_key(request), streamed=True
    )
    return _stream_response(service, run, body, temporary=True)


@post(
    "/runs/wait",
    status_code=200,
    summary="Create a stateless run, wait for it",
    responses=CREATE_ERRORS,
)
async def wait_stateless_run(
    principal: Principal, run_service: RunService, request: Request[Any, Any, Any]
) -> Stream:
    """Run on a temporary thread and answer the final values."""
    service = run_service
    body = await _body(request, stateless=True)
    run = await service.create(principal, None, body, idempotency_key=idempotency_key(request))
    return _wait_response(service, run, body, temporary=True)


ROUTES: list[ControllerRouterHandler] = [
    create_run,
    stream_run,
    wait_run,
    list_runs,
    get_run,
    delete_run,
    join_run,
    join_stream,
    join_thread_stream,
    cancel_run,
    cancel_runs,
    create_stateless_run,
    create_stateless_batch,
    stream_stateless_run,
    wait_stateless_run,
]
"""Register with `Litestar(route_handlers=[..., *ROUTES])`."""

__all__ = ["ROUTES"]
