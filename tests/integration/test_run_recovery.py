"""A run's `updates` and `values` events can be rebuilt from its checkpoints (issue 9).

A replica that dies after a step's checkpoint was saved but before its events were stored
leaves a stream without them; the next attempt rebuilds them (`server.runs.recovery`). These
tests pin the rebuild to what live runs really emitted, and kill the end of a run to show the
next attempt completes its stream.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any, cast

import psycopg
import pytest
from langgraph.checkpoint.base import BaseCheckpointSaver

from graph.runtime import Runtime
from mock_llm.process import MockLLM
from server.runs import repo
from server.runs.invocation import build_config, build_context
from server.runs.recovery import STEP_EVENTS, step_events
from server.runs.service import RunService
from server.runs.worker import RunWorker
from tests.integration.test_runs_engine import (  # noqa: F401 - fixtures
    ALICE,
    MIA,
    QUESTION,
    body,
    events_of,
    fx_clean,
    fx_engine_db,
    fx_runtime,
    fx_worker,
    hang_first_end,
    new_thread,
    quick_config,
    wait_status,
)

pytestmark = pytest.mark.integration

MODES = [["values"], ["updates"], ["values", "updates"], ["messages-tuple", "values"]]


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


async def stored_and_rebuilt(
    rt: Runtime, tid: uuid.UUID, run_id: str, modes: list[str]
) -> tuple[list[Any], list[Any]]:
    stored = [(e, d) for _, e, d in await events_of(rt, run_id) if e in STEP_EVENTS]
    rebuilt = await step_events(rt.graph, {"configurable": {"thread_id": str(tid)}}, run_id, modes)
    return stored, [(e, json.loads(d)) for e, d in rebuilt]


@pytest.mark.parametrize("modes", MODES, ids=["+".join(m) for m in MODES])
async def test_rebuilt_events_equal_what_live_runs_emitted(
    rt: Runtime, worker: RunWorker, modes: list[str]
) -> None:
    service = RunService(rt)
    tid = await new_thread(rt)
    runs = []
    question = await service.create(
        ALICE, tid, body(input=ask("How long is the return window?"), stream_mode=modes)
    )
    assert await wait_status(rt, question.run_id, {"success", "error"}) == "success"
    runs.append(question.run_id)
    small = await service.create(
        ALICE, tid, body(input=ask("Refund $20 on LS-10002 please."), stream_mode=modes)
    )
    assert await wait_status(rt, small.run_id, {"success", "error"}) == "success"
    runs.append(small.run_id)
    held = await service.create(
        ALICE, tid, body(input=ask("Refund $600 on LS-10017 please."), stream_mode=modes)
    )
    assert await wait_status(rt, held.run_id, {"interrupted", "error"}) == "interrupted"
    runs.append(held.run_id)
    resume = {"resume": {"decisions": [{"type": "approve"}]}}
    approved = await service.create(MIA, tid, body(command=resume, stream_mode=modes))
    assert await wait_status(rt, approved.run_id, {"success", "error"}) == "success"
    runs.append(approved.run_id)
    for run_id in runs:
        stored, rebuilt = await stored_and_rebuilt(rt, tid, run_id, modes)
        assert stored == rebuilt, run_id


BOTH = ["values", "updates"]


def assert_complete(
    events: list[tuple[int, str, Any]], stored: list[Any], rebuilt: list[Any]
) -> None:
    """The stream holds every step event exactly once and ends with the final values."""
    assert stored == rebuilt
    assert [e for _, e, d in events if e == "updates" and "finalize" in d] == ["updates"]
    seqs = [seq for seq, _, _ in events]
    assert seqs == sorted(set(seqs))
    assert events[-1][1] == "values" and events[-1][2].get("response")


async def run_whose_first_end_hangs(
    rt: Runtime, monkeypatch: pytest.MonkeyPatch, **run: Any
) -> tuple[uuid.UUID, str]:
    """A question whose first attempt's end never commits; the takeover ends it `success`."""
    worker = RunWorker(rt, rt.deps.settings, config=quick_config(lease_s=2.0))
    stuck = hang_first_end(worker, monkeypatch)
    tid = await new_thread(rt)
    await worker.start()
    try:
        created = await RunService(rt).create(
            ALICE, tid, body(input=ask("How long is the return window?"), **run)
        )
        await asyncio.wait_for(stuck.wait(), timeout=60)
        assert await wait_status(rt, created.run_id, {"success", "error"}, within=60) == "success"
    finally:
        await worker.stop()
    return tid, created.run_id


async def test_a_run_that_died_before_recording_its_end_still_ends_its_stream(
    rt: Runtime, clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its final events were taken into the end's transaction, which never committed."""
    tid, run_id = await run_whose_first_end_hangs(rt, monkeypatch, stream_mode=BOTH)
    events = await events_of(rt, run_id)
    stored, rebuilt = await stored_and_rebuilt(rt, tid, run_id, BOTH)
    assert_complete(events, stored, rebuilt)
    # Only the run's opening metadata: the finished run's stream ends as it would have.
    assert [e for _, e, _ in events].count("metadata") == 1


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="durability `exit`: the only checkpoint of the finished graph is its last, so the "
    "takeover cannot rebuild the steps whose events died with the end's transaction (deferred: "
    "the stream is the opening metadata alone; live: it stops at the last batch stored); "
    "docs/http-service.md, 'Known gap under exit'",
)
@pytest.mark.parametrize("modes", [BOTH, [*BOTH, "custom"]], ids=["deferred", "live"])
async def test_an_exit_run_that_died_before_recording_its_end_still_ends_its_stream(
    rt: Runtime, clean: None, monkeypatch: pytest.MonkeyPatch, modes: list[str]
) -> None:
    """As above, for a run that asked for `exit` durability (`custom` makes the events live)."""
    _, run_id = await run_whose_first_end_hangs(
        rt, monkeypatch, stream_mode=modes, durability="exit"
    )
    events = await events_of(rt, run_id)
    assert [e for _, e, d in events if e == "updates" and "finalize" in d] == ["updates"]
    assert events[-1][1] == "values" and events[-1][2].get("response")


async def test_a_taken_over_run_stores_the_steps_its_dead_attempt_never_stored(
    rt: Runtime, clean: None, mock_llm: MockLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Attempt 1 checkpoints steps but cannot store their events, then loses its lease."""
    real_insert = repo.insert_events

    async def refuse_first_attempt(
        conn: Any, run_id: uuid.UUID, events: Any, *, fence: tuple[str, int] | None = None
    ) -> bool:
        if fence is not None and fence[1] == 1:
            raise psycopg.OperationalError("injected: events of attempt 1 are not stored")
        return await real_insert(conn, run_id, events, fence=fence)

    monkeypatch.setattr(repo, "insert_events", refuse_first_attempt)
    worker = RunWorker(rt, rt.deps.settings, config=quick_config(lease_s=2.0))
    await mock_llm.add_faults([{"kind": "timeout", "delay_s": 30.0, "count": 1}])
    tid = await new_thread(rt)
    await worker.start()
    try:
        run = await RunService(rt).create(
            ALICE, tid, body(input=ask("How long is the return window?"), stream_mode=BOTH)
        )
        deadline = time.monotonic() + 60
        while not await mock_llm.requests():  # attempt 1 is in its model call
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        async with rt.pool.connection() as conn:  # its replica "dies": another worker id
            await conn.execute(
                "UPDATE runs SET worker_id = 'dead-replica', lease_expires_at = now()"
                " WHERE run_id = %s",
                (uuid.UUID(run.run_id),),
            )
        assert await wait_status(rt, run.run_id, {"success", "error"}, within=90) == "success"
    finally:
        await worker.stop()
    events = await events_of(rt, run.run_id)
    stored, rebuilt = await stored_and_rebuilt(rt, tid, run.run_id, BOTH)
    assert_complete(events, stored, rebuilt)
    names = [e for _, e, _ in events]
    assert names.count("metadata") == 2  # the opening one, and where attempt 2 took over
    async with rt.pool.connection() as conn:
        final = await repo.get_run(conn, uuid.UUID(run.run_id))
    assert final is not None and final["attempt"] == 2


async def test_a_run_killed_between_a_steps_writes_and_its_checkpoint_still_answers(
    rt: Runtime, clean: None, mock_llm: MockLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chaos seed 9: `__start__`'s writes were saved, the step-0 checkpoint never was.

    LangGraph's live state then shows no `next` step although the graph has not run: the next
    attempt must continue (and answer), not end `success` with only the input.
    """
    service = RunService(rt)
    tid = await new_thread(rt)
    run = await service.create(ALICE, tid, body(input=QUESTION, stream_mode=BOTH))
    async with rt.pool.connection() as conn:
        row = await repo.claim_next(conn, "dead-replica", 0.5)
    assert row is not None and str(row["run_id"]) == run.run_id
    config = build_config(dict(row), rt.deps.settings.recursion_limit)
    saver = cast("BaseCheckpointSaver[Any]", rt.graph.checkpointer)
    real_aput = type(saver).aput
    calls = 0

    async def dying_aput(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:  # the step-0 checkpoint: the replica's database went away
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return await real_aput(self, *args, **kwargs)

    monkeypatch.setattr(type(saver), "aput", dying_aput)
    with pytest.raises(psycopg.OperationalError):
        async for _ in rt.graph.astream(
            QUESTION, config, context=build_context(dict(row)), durability="sync"
        ):
            pass
    monkeypatch.setattr(type(saver), "aput", real_aput)
    state = await rt.graph.aget_state({"configurable": {"thread_id": str(tid)}})
    assert state.metadata is not None and state.metadata["source"] == "input"
    assert state.next == ()  # looks finished

    worker = RunWorker(rt, rt.deps.settings, config=quick_config(lease_s=1.5))
    await worker.start()
    try:
        assert await wait_status(rt, run.run_id, {"success", "error"}, within=60) == "success"
    finally:
        await worker.stop()
    state = await rt.graph.aget_state({"configurable": {"thread_id": str(tid)}})
    assert len([m for m in state.values["messages"] if m.type == "human"]) == 1
    assert state.values.get("response"), "attempt 2 ended without an answer"
    assert len(await mock_llm.requests()) == 1
    stored, rebuilt = await stored_and_rebuilt(rt, tid, run.run_id, BOTH)
    assert_complete(await events_of(rt, run.run_id), stored, rebuilt)


async def test_a_run_whose_last_writes_died_with_its_replica_still_ends_with_its_values(
    rt: Runtime, clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chaos seed 9 under two test workers: the final checkpoint was saved, `finalize`'s writes
    (saved beside it, not before it) were not, and no event was stored.

    The rebuild cannot read `finalize`'s result from the writes; the stream must still end
    with the final values, which the checkpoint holds.
    """
    service = RunService(rt)
    tid = await new_thread(rt)
    run = await service.create(ALICE, tid, body(input=QUESTION, stream_mode=BOTH))
    async with rt.pool.connection() as conn:
        row = await repo.claim_next(conn, "dead-replica", 0.5)
    assert row is not None and str(row["run_id"]) == run.run_id
    config = build_config(dict(row), rt.deps.settings.recursion_limit)
    saver = cast("BaseCheckpointSaver[Any]", rt.graph.checkpointer)
    real_writes = type(saver).aput_writes

    async def losing_finalize(
        self: Any, config: Any, writes: Any, task_id: str, task_path: str = ""
    ) -> None:
        if "finalize" in task_path:
            return  # in flight when the replica died
        await real_writes(self, config, writes, task_id, task_path)

    monkeypatch.setattr(type(saver), "aput_writes", losing_finalize)
    async for _ in rt.graph.astream(
        QUESTION, config, context=build_context(dict(row)), durability="sync"
    ):
        pass
    monkeypatch.setattr(type(saver), "aput_writes", real_writes)
    state = await rt.graph.aget_state({"configurable": {"thread_id": str(tid)}})
    assert state.next == () and state.values.get("response")

    worker = RunWorker(rt, rt.deps.settings, config=quick_config(lease_s=1.5))
    await worker.start()
    try:
        assert await wait_status(rt, run.run_id, {"success", "error"}, within=60) == "success"
    finally:
        await worker.stop()
    stored, rebuilt = await stored_and_rebuilt(rt, tid, run.run_id, BOTH)
    assert_complete(await events_of(rt, run.run_id), stored, rebuilt)


async def test_a_takeover_at_an_interrupt_before_breakpoint_does_not_run_past_it(
    rt: Runtime, clean: None, mock_llm: MockLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run stopped before `agent` (its breakpoint), its end was never recorded.

    Continuing with `astream(None)` would be a resume, which passes the breakpoint: the next
    attempt must end the run `interrupted` without calling the model.
    """
    worker = RunWorker(rt, rt.deps.settings, config=quick_config(lease_s=2.0))
    stuck = hang_first_end(worker, monkeypatch)
    tid = await new_thread(rt)
    await worker.start()
    try:
        run = await RunService(rt).create(
            ALICE,
            tid,
            body(input=ask("How long is the return window?"), interrupt_before=["agent"]),
        )
        await asyncio.wait_for(stuck.wait(), timeout=60)
        assert (
            await wait_status(rt, run.run_id, {"success", "interrupted", "error"}, within=60)
            == "interrupted"
        )
    finally:
        await worker.stop()
    async with rt.pool.connection() as conn:
        final = await repo.get_run(conn, uuid.UUID(run.run_id))
    assert final is not None and final["attempt"] == 2
    assert await mock_llm.requests() == []  # `agent` never ran
    state = await rt.graph.aget_state({"configurable": {"thread_id": str(tid)}})
    assert state.next == ("agent",)
