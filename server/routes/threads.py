"""Threads: CRUD, copy, prune, search, count; state (latest, at a checkpoint), update, history.

Every route resolves the thread through `ThreadsRepo` first, so a thread of another tenant (or,
for role `user`, of another owner) answers 404 exactly like a missing one.
"""

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Annotated, Any, TypeAlias
from uuid import UUID

from langchain_core.runnables import RunnableConfig
from langgraph.errors import InvalidUpdateError
from langgraph.types import StateSnapshot
from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from core.errors import Conflict, Forbidden, NotFound, Unprocessable
from core.identity import Principal
from graph.runtime import Runtime
from server.auth import PrincipalDep
from server.edge import MAX_PAGE
from server.openapi import api_errors
from server.routes.deps import RuntimeDep, ThreadsRepoDep
from server.runs.guards import PROTECTED_NODES, MessageLimits, check_node, check_state_values
from server.runs.service import RunService
from server.schemas import (
    CheckpointIn,
    HistoryRequest,
    StateAtCheckpoint,
    StateUpdate,
    StateUpdateOut,
    ThreadCount,
    ThreadCreate,
    ThreadOut,
    ThreadPatch,
    ThreadPrune,
    ThreadSearch,
    ThreadStateOut,
)
from server.state_view import checkpoint_of, thread_json, thread_state
from server.threads_repo import ThreadRow, ThreadsRepo

logger = logging.getLogger(__name__)

DELETE_ATTEMPTS = 3
"""Rounds of cancel-then-delete before a thread that keeps receiving runs answers 409."""

Subgraphs: TypeAlias = Annotated[bool, QueryParameter(description="Include subgraph states.")]
_VALUES_UNSUPPORTED = "filtering threads by `values` is not supported; filter by `metadata`"


def parse_thread_id(raw: str) -> UUID:
    """Parse a path thread id; anything but a UUID is an unknown thread (404)."""
    try:
        return UUID(raw)
    except ValueError:
        raise NotFound(f"thread {raw} not found") from None


def graph_config(
    principal: Principal,
    thread_id: UUID,
    checkpoint: CheckpointIn | None = None,
    checkpoint_id: str | None = None,
) -> RunnableConfig:
    """The graph config for a thread, carrying the principal's identity (never the client's)."""
    configurable: dict[str, Any] = {
        "thread_id": str(thread_id),
        "checkpoint_ns": checkpoint.checkpoint_ns if checkpoint else "",
        "user_id": principal.user_id,
        "tenant_id": principal.tenant_id,
    }
    cid = (checkpoint.checkpoint_id if checkpoint else None) or checkpoint_id
    if cid:
        configurable["checkpoint_id"] = cid
    if checkpoint and checkpoint.checkpoint_map:
        configurable["checkpoint_map"] = checkpoint.checkpoint_map
    return {"configurable": configurable}


def _before_config(thread_id: UUID, before: str | dict[str, Any] | None) -> RunnableConfig | None:
    if before is None:
        return None
    if isinstance(before, str):
        cid: Any = before
    else:
        cid = (before.get("configurable") or before).get("checkpoint_id")
    if not isinstance(cid, str) or not cid:
        raise Unprocessable("`before` must be a checkpoint id or contain `checkpoint_id`")
    return {
        "configurable": {"thread_id": str(thread_id), "checkpoint_ns": "", "checkpoint_id": cid}
    }


async def latest_snapshot(runtime: Runtime, thread_id: UUID) -> StateSnapshot:
    """The thread's latest state (empty values when it has no checkpoint yet)."""
    return await runtime.graph.aget_state({"configurable": {"thread_id": str(thread_id)}})


async def load_thread(runtime: Runtime, row: ThreadRow) -> ThreadOut:
    """Render a thread row with its latest values and pending interrupts."""
    return thread_json(row, await latest_snapshot(runtime, row["thread_id"]))


def _select(thread: ThreadOut, select: Sequence[str] | None) -> dict[str, Any]:
    data = dict(thread)
    return {k: data[k] for k in select if k in data} if select else data


async def delete_with_runs(
    principal: Principal, threads_repo: ThreadsRepo, run_service: RunService, tid: UUID
) -> None:
    """Cancel the thread's active runs (and wait for them), then delete it.

    Raises:
        NotFound: missing or not visible.
        Conflict: new runs kept arriving for `DELETE_ATTEMPTS` rounds.
    """
    await threads_repo.require_visible(principal, tid)
    for _ in range(DELETE_ATTEMPTS):
        for status in ("running", "pending"):
            for run in await run_service.list_runs(principal, tid, status=status, limit=100):
                with contextlib.suppress(NotFound):  # it ended meanwhile
                    await run_service.cancel(principal, tid, run.run_id, wait=True)
        try:
            await threads_repo.delete(principal, tid)
            return
        except Conflict:
            continue  # a run arrived meanwhile
    raise Conflict(f"thread {tid} keeps receiving runs; try deleting it again")


class ThreadsController(Controller):
    """Conversation threads and their checkpointed state."""

    path = "/threads"
    tags = ["threads"]

    @post("/", operation_id="CreateThread", status_code=200, responses=api_errors(409, body=True))
    async def create_thread(
        self,
        principal: PrincipalDep,
        threads_repo: ThreadsRepoDep,
        runtime: RuntimeDep,
        data: JSONBody[ThreadCreate],
    ) -> ThreadOut:
        """Create a thread owned by the caller (409 if the id exists, unless `do_nothing`)."""
        row, created = await threads_repo.create(
            principal, data.thread_id, data.metadata, data.if_exists
        )
        if created:  # nothing is checkpointed yet: there is no state to read
            return {**thread_json(row, None), "values": {}}
        return await load_thread(runtime, row)

    @post("/search", operation_id="SearchThreads", status_code=200, responses=api_errors(body=True))
    async def search_threads(
        self,
        principal: PrincipalDep,
        threads_repo: ThreadsRepoDep,
        runtime: RuntimeDep,
        data: JSONBody[ThreadSearch],
    ) -> list[dict[str, Any]]:
        """List the caller's visible threads matching metadata, ids and status."""
        if data.values:
            raise Unprocessable(_VALUES_UNSUPPORTED)
        rows = await threads_repo.search(
            principal,
            metadata=data.metadata,
            ids=data.ids,
            status=data.status,
            limit=data.limit,
            offset=data.offset,
            sort_by=data.sort_by,
            sort_order=data.sort_order,
        )
        need_values = not data.select or {"values", "interrupts"} & set(data.select)
        if need_values:
            threads = await asyncio.gather(*(load_thread(runtime, r) for r in rows))
        else:
            threads = [thread_json(r, None) for r in rows]
        return [_select(t, data.select) for t in threads]

    @post("/count", operation_id="CountThreads", status_code=200, responses=api_errors(body=True))
    async def count_threads(
        self, principal: PrincipalDep, threads_repo: ThreadsRepoDep, data: JSONBody[ThreadCount]
    ) -> int:
        """Count the caller's visible threads matching metadata and status."""
        if data.values:
            raise Unprocessable(_VALUES_UNSUPPORTED)
        return await threads_repo.count(principal, metadata=data.metadata, status=data.status)

    @get("/{thread_id:str}", operation_id="GetThread", responses=api_errors(404))
    async def get_thread(
        self,
        principal: PrincipalDep,
        threads_repo: ThreadsRepoDep,
        runtime: RuntimeDep,
        thread_id: FromPath[str],
    ) -> ThreadOut:
        """Return the thread with its latest values and pending interrupts."""
        row = await threads_repo.require_visible(principal, parse_thread_id(thread_id))
        return await load_thread(runtime, row)

    @patch("/{thread_id:str}", operation_id="PatchThread", responses=api_errors(404, body=True))
    async def patch_thread(
        self,
        principal: PrincipalDep,
        threads_repo: ThreadsRepoDep,
        runtime: RuntimeDep,
        thread_id: FromPath[str],
        data: JSONBody[ThreadPatch],
    ) -> ThreadOut:
        """Merge metadata into the thread."""
        row = await threads_repo.patch_metadata(
            principal, parse_thread_id(thread_id), data.metadata
        )
        return await load_thread(runtime, row)

    @delete(
        "/{thread_id:str}",
        operation_id="DeleteThread",
        status_code=204,
        responses=api_errors(404, 409),
    )
    async def delete_thread(
        self,
        principal: PrincipalDep,
        threads_repo: ThreadsRepoDep,
        run_service: RunService,
        thread_id: FromPath[str],
    ) -> None:
        """Delete the thread, its runs and its checkpoints; active runs are cancelled first.

        As the LangGraph server does: its pending and running runs are cancelled (`interrupt`,
        so what they executed stays recorded) and waited for, then the thread goes. 409 only
        when new runs keep arriving while it is being deleted.
        """
        await delete_with_runs(principal, threads_repo, run_service, parse_thread_id(thread_id))

    @post(
        "/{thread_id:str}/copy",
        operation_id="CopyThread",
        status_code=200,
        responses=api_errors(404, 409),
    )
    async def copy_thread(
        self,
        principal: PrincipalDep,
        threads_repo: ThreadsRepoDep,
        runtime: RuntimeDep,
        thread_id: FromPath[str],
    ) -> ThreadOut:
        """Copy an idle thread and its checkpoints to a new thread the caller owns.

        Runs, approvals and refunds stay with the source. A busy, interrupted or failed thread
        answers 409: a waiting approval, or a failed step to retry, belongs to its own thread.
        """
        row = await threads_repo.copy(principal, parse_thread_id(thread_id))
        return await load_thread(runtime, row)

    @post(
        "/prune", operation_id="PruneThreads", status_code=200, responses=api_errors(409, body=True)
    )
    async def prune_threads(
        self,
        principal: PrincipalDep,
        threads_repo: ThreadsRepoDep,
        run_service: RunService,
        data: JSONBody[ThreadPrune],
    ) -> dict[str, int]:
        """Delete threads, or keep only their latest checkpoint; answers `pruned_count`.

        Threads the caller may not see are skipped like missing ones; `keep_latest` also skips
        busy threads.
        """
        ids = list(dict.fromkeys(data.thread_ids))
        if data.strategy == "keep_latest":
            return {"pruned_count": await threads_repo.prune_history(principal, ids)}
        pruned = 0
        for tid in ids:
            with contextlib.suppress(NotFound):
                await delete_with_runs(principal, threads_repo, run_service, tid)
                pruned += 1
        return {"pruned_count": pruned}

    @get("/{thread_id:str}/state", operation_id="GetThreadState", responses=api_errors(404))
    async def get_state(
        self,
        principal: PrincipalDep,
        threads_repo: ThreadsRepoDep,
        runtime: RuntimeDep,
        thread_id: FromPath[str],
        subgraphs: Subgraphs = False,
    ) -> ThreadStateOut:
        """Return the thread's latest state."""
        tid = parse_thread_id(thread_id)
        await threads_repo.require_visible(principal, tid)
        snapshot = await runtime.graph.aget_state(graph_config(principal, tid), subgraphs=subgraphs)
        return thread_state(snapshot)

    @get(
        "/{thread_id:str}/state/{checkpoint_id:str}",
        operation_id="GetThreadStateAt",
        responses=api_errors(404),
    )
    async def get_state_at(
        self,
        principal: PrincipalDep,
        threads_repo: ThreadsRepoDep,
        runtime: RuntimeDep,
        thread_id: FromPath[str],
        checkpoint_id: FromPath[str],
        subgraphs: Subgraphs = False,
    ) -> ThreadStateOut:
        """Return the thread's state at a checkpoint (404 if there is no such checkpoint)."""
        tid = parse_thread_id(thread_id)
        await threads_repo.require_visible(principal, tid)
        config = graph_config(principal, tid, checkpoint_id=checkpoint_id)
        return await _state_at(runtime, config, subgraphs)

    @post(
        "/{thread_id:str}/state/checkpoint",
        operation_id="PostThreadStateAt",
        status_code=200,
        responses=api_errors(404, body=True),
    )
    async def post_state_at(
        self,
        principal: PrincipalDep,
        threads_repo: ThreadsRepoDep,
        runtime: RuntimeDep,
        thread_id: FromPath[str],
        data: JSONBody[StateAtCheckpoint],
    ) -> ThreadStateOut:
        """Return the thread's state at the checkpoint given in the body."""
        tid = parse_thread_id(thread_id)
        await threads_repo.require_visible(principal, tid)
        config = graph_config(principal, tid, data.checkpoint)
        return await _state_at(runtime, config, data.subgraphs)

    @post(
        "/{thread_id:str}/state",
        operation_id="UpdateThreadState",
        status_code=200,
        responses=api_errors(403, 404, 409, body=True),
    )
    async def update_state(
        self,
        principal: PrincipalDep,
        threads_repo: ThreadsRepoDep,
        runtime: RuntimeDep,
        thread_id: FromPath[str],
        data: JSONBody[StateUpdate],
    ) -> StateUpdateOut:
        """Add messages to the thread's state (admins only); return the new checkpoint.

        Only the `messages` channel is writable, and `as_node` may not name the nodes that
        judge, hold or execute tool calls: a state write can never release an action. 403
        for users and approvers, 409 while a run is active, an interrupt waits for an answer
        (answer it with a resume instead) or the checkpoint is about to run one of those
        nodes, 422 for other channels or nodes.
        """
        tid = parse_thread_id(thread_id)
        row = await threads_repo.require_visible(principal, tid)  # 404 before 403
        if not principal.is_admin:
            raise Forbidden("updating a thread's state requires role admin")
        check_state_values(data.values, "values", MessageLimits.of(runtime.deps.settings))
        check_node(data.as_node, "as_node")
        if row["status"] == "busy":
            raise Conflict(f"thread {tid} is busy: a run is active; retry when it ends")
        config = graph_config(principal, tid, data.checkpoint, data.checkpoint_id)
        target = await runtime.graph.aget_state(config)
        latest = await latest_snapshot(runtime, tid)
        if target.interrupts or latest.interrupts:
            raise Conflict(f"thread {tid} waits for an answer to an interrupt; resume it instead")
        if PROTECTED_NODES & {*target.next, *latest.next}:
            raise Conflict(
                f"thread {tid} is between judging and executing tool calls; its state cannot "
                "be written there"
            )
        try:
            new_config = await runtime.graph.aupdate_state(
                config, data.values, as_node=data.as_node
            )
        except InvalidUpdateError as exc:
            raise Unprocessable(f"invalid state update: {exc}") from exc
        except (ValueError, TypeError, NotImplementedError) as exc:
            raise Unprocessable(f"invalid state update values: {exc}") from exc
        snapshot = await latest_snapshot(runtime, tid)
        await threads_repo.set_status(tid, "interrupted" if snapshot.interrupts else "idle")
        return {"checkpoint": checkpoint_of(new_config)}

    @post(
        "/{thread_id:str}/history",
        operation_id="GetThreadHistory",
        status_code=200,
        responses=api_errors(404, body=True),
    )
    async def history(
        self,
        principal: PrincipalDep,
        threads_repo: ThreadsRepoDep,
        runtime: RuntimeDep,
        thread_id: FromPath[str],
        data: JSONBody[HistoryRequest],
    ) -> list[ThreadStateOut]:
        """Return up to `limit` past states, newest first."""
        return await _history(principal, threads_repo, runtime, thread_id, data)

    @get(
        "/{thread_id:str}/history",
        operation_id="GetThreadHistoryByQuery",
        status_code=200,
        responses=api_errors(404),
    )
    async def history_by_query(
        self,
        principal: PrincipalDep,
        threads_repo: ThreadsRepoDep,
        runtime: RuntimeDep,
        thread_id: FromPath[str],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 10,
        before: Annotated[str | None, QueryParameter(description="A checkpoint id.")] = None,
    ) -> list[ThreadStateOut]:
        """`GET` form of the history (the SDKs call it): `limit` and `before` as parameters."""
        data = HistoryRequest(limit=limit, before=before)
        return await _history(principal, threads_repo, runtime, thread_id, data)


async def _history(
    principal: Principal,
    threads_repo: ThreadsRepo,
    runtime: Runtime,
    thread_id: str,
    data: HistoryRequest,
) -> list[ThreadStateOut]:
    tid = parse_thread_id(thread_id)
    await threads_repo.require_visible(principal, tid)
    config = graph_config(principal, tid, data.checkpoint)
    return [
        thread_state(s)
        async for s in runtime.graph.aget_state_history(
            config,
            filter=data.metadata,
            before=_before_config(tid, data.before),
            limit=data.limit,
        )
    ]


async def _state_at(runtime: Runtime, config: RunnableConfig, subgraphs: bool) -> ThreadStateOut:
    snapshot = await runtime.graph.aget_state(config, subgraphs=subgraphs)
    if snapshot.created_at is None and config["configurable"].get("checkpoint_id"):
        raise NotFound(f"checkpoint {config['configurable']['checkpoint_id']} not found")
    return thread_state(snapshot)


__all__ = ["ThreadsController", "graph_config", "load_thread", "parse_thread_id"]
