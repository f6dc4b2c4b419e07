"""The chaos run's end checks, against the database (and replays where streams are concerned).

Each failed check appends a `Violation` naming the runs and what was seen; see harness.py's
docstring for the list.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import httpx

from tests.chaos.sse import read_events

if TYPE_CHECKING:
    from tests.chaos.harness import Chaos


def _short(value: Any, limit: int = 300) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return text if len(text) <= limit else text[:limit] + "..."


def _has_interrupt(data: Any) -> bool:
    return isinstance(data, dict) and "__interrupt__" in data


async def check(chaos: Chaos, stuck: list[dict[str, Any]]) -> None:
    """Run every check; violations go to `chaos.violations`."""
    from tests.chaos.harness import THRESHOLD_CENTS, Violation

    v = chaos.violations

    def fail(invariant: str, detail: str, *runs: Any) -> None:
        v.append(Violation(invariant, detail, [str(r) for r in runs if r]))

    # ---- runs: terminal or resumable, threads not left busy
    for row in stuck:
        fail(
            "run not terminal after quiescence",
            f"status {row['status']} attempt {row['attempt']} worker {row['worker_id']} lease"
            f" {row['lease_expires_at']} idle {row['idle']} (thread {row['thread_id']})",
            row["run_id"],
        )
    runs = {
        str(r["run_id"]): r
        for r in chaos.query(
            "SELECT run_id, thread_id::text AS thread_id, status, attempt, worker_id, kwargs,"
            " output, error, owner_id FROM runs ORDER BY created_at"
        )
    }
    for r in chaos.query(
        "SELECT t.thread_id::text AS thread_id, t.status FROM threads t WHERE t.status = 'busy'"
        " AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.thread_id = t.thread_id"
        " AND r.status IN ('pending', 'running'))"
    ):
        fail("thread left busy", f"thread {r['thread_id']} is busy with no active run")
    errors = defaultdict(list)
    for run_id, r in runs.items():
        if r["status"] == "error":
            errors[(r["error"] or {}).get("error", "?")].append(run_id)
    for kind, ids in sorted(errors.items()):
        chaos.notes.append(f"{len(ids)} run(s) ended error {kind}: {', '.join(ids[:6])}")

    # ---- events: stored rows
    stored: dict[str, list[tuple[int, str, Any]]] = defaultdict(list)
    for event_row in chaos.query(
        "SELECT run_id::text AS run_id, seq, event, data FROM run_events ORDER BY run_id, seq"
    ):
        stored[event_row["run_id"]].append(
            (int(event_row["seq"]), event_row["event"], event_row["data"])
        )
    for run_id, r in runs.items():
        events = stored.get(run_id, [])
        label = f"run {run_id} ({r['status']}, attempt {r['attempt']}, thread {r['thread_id']})"
        seqs = [s for s, _, _ in events]
        if seqs != list(range(len(seqs))):
            missing = sorted(set(range(max(seqs, default=-1) + 1)) - set(seqs))
            fail(
                "event seq gap",
                f"{label}: seqs {seqs[:5]}...{seqs[-5:]} missing {missing[:10]}",
                run_id,
            )
        if not events or events[0][1] != "metadata" or (events[0][2] or {}).get("attempt") != 1:
            fail(
                "stream does not start with metadata",
                f"{label}: first event {_short(events[0] if events else None)}",
                run_id,
            )
        attempts = [int((d or {}).get("attempt", 0)) for _, e, d in events if e == "metadata"]
        if attempts != sorted(set(attempts)) or (attempts and attempts[-1] > int(r["attempt"])):
            fail("metadata events out of order", f"{label}: metadata attempts {attempts}", run_id)
        if r["status"] not in ("success", "error", "interrupted", "timeout"):
            continue
        modes = list((r["kwargs"] or {}).get("stream_mode") or ["values"])
        last = events[-1] if events else None
        output = r["output"] if isinstance(r["output"], dict) else {}
        if r["status"] == "success":
            response = output.get("response")
            if (
                last is None
                or last[1] != "values"
                or not isinstance(last[2], dict)
                or last[2].get("response") != response
                or response is None
            ):
                fail(
                    "final event missing",
                    f"{label}: a success whose last stored event is"
                    f" {_short(last, 200)}; stored response {_short(response, 200)}",
                    run_id,
                )
            if "updates" in modes:
                finals = [
                    s
                    for s, e, d in events
                    if e == "updates" and isinstance(d, dict) and "finalize" in d
                ]
                if len(finals) != 1:
                    fail(
                        "finalize update not exactly once",
                        f"{label}: `finalize` updates at seqs {finals} of {len(events)}",
                        run_id,
                    )
        elif r["status"] == "error":
            if last is None or last[1] != "error" or last[2] != r["error"]:
                fail(
                    "final event missing",
                    f"{label}: an error run whose last event is {_short(last, 200)};"
                    f" stored error {_short(r['error'], 200)}",
                    run_id,
                )
        elif r["status"] == "interrupted" and "__interrupt__" in output:
            if last is None or not _has_interrupt(last[2]):
                fail(
                    "final event missing",
                    f"{label}: interrupted, but the last event is {_short(last, 200)}",
                    run_id,
                )
            else:
                got: list[Any] = sorted(str(i.get("id")) for i in last[2]["__interrupt__"])
                want = sorted(str(i.get("id")) for i in output["__interrupt__"])
                if got != want:
                    fail(
                        "final event differs from the output",
                        f"{label}: last event interrupts {got}, output {want}",
                        run_id,
                    )
        seen: dict[str, int] = {}
        for s, e, d in events:
            if e != "updates":
                continue
            key = json.dumps(d, sort_keys=True, default=str)
            if key in seen:
                fail(
                    "event stored twice",
                    f"{label}: the update at seq {s} repeats seq {seen[key]}: {_short(d, 160)}",
                    run_id,
                )
                break
            seen[key] = s

    # ---- runs the clients were given still exist (nothing here deletes or rolls back a run)
    for job in chaos.jobs:
        for run_id in job.run_ids:
            if run_id and run_id not in runs:
                fail(
                    "run lost",
                    f"job {job.client}.{job.number} ({job.kind}/{job.mode}, thread"
                    f" {job.thread_id}, approval {job.approval_id}): the API answered run"
                    f" {run_id}, which no longer exists ({job.gave_up or 'no client error'})",
                    run_id,
                )

    # ---- events: what live streams received, and replays
    for job in chaos.jobs:
        for run_id, live in job.live.items():
            rows: list[Any] = stored.get(run_id, [])
            got = [(i, e, d) for i, e, d in live.events]
            if any(i is None for i, _, _ in got):  # not resumable: no ids, compare the rest
                rows = [(None, e, d) for _, e, d in rows]
            label = (
                f"live stream of run {run_id} (job {job.client}.{job.number},"
                f" {len(got)} events, {live.reconnects} reconnects,"
                f" {'ended' if live.ended_cleanly else 'not ended'})"
            )
            status = runs.get(run_id, {}).get("status")
            if got != rows[: len(got)]:
                diff = next(
                    (k for k, (a, b) in enumerate(zip(got, rows, strict=False)) if a != b),
                    min(len(got), len(rows)),
                )
                fail(
                    "live stream differs from the stored events",
                    f"{label}: first difference at index {diff}: live"
                    f" {_short(got[diff] if diff < len(got) else None, 200)} stored"
                    f" {_short(rows[diff] if diff < len(rows) else None, 200)}",
                    run_id,
                )
            elif live.ended_cleanly and len(got) != len(rows):
                fail(
                    "live stream ended early",
                    f"{label}: stored {len(rows)} events; the stream ended after {len(got)},"
                    f" last {_short(got[-1] if got else None, 200)}; run is {status}",
                    run_id,
                )
            elif not live.ended_cleanly and status in ("success", "error", "interrupted"):
                fail(
                    "live stream never ended",
                    f"{label}: the run is {status} but the stream did not end: {job.gave_up}",
                    run_id,
                )
    async with httpx.AsyncClient(timeout=60.0) as http:
        replica = chaos.replicas[0]
        for run_id, r in runs.items():
            if r["status"] not in ("success", "error", "interrupted", "timeout"):
                continue
            rows = stored.get(run_id, [])
            url = f"{replica.url}/threads/{r['thread_id']}/runs/{run_id}/stream"
            replay: list[tuple[int | None, str, Any]] = []
            try:
                async with http.stream(
                    "GET", url, headers={"x-api-key": chaos.keys["admin"], "Last-Event-ID": "-1"}
                ) as resp:
                    if resp.status_code != 200:
                        fail("replay failed", f"GET {url} -> {resp.status_code}", run_id)
                        continue
                    async for ev in read_events(resp):
                        replay.append((ev.id, ev.event, ev.data))
            except httpx.HTTPError as exc:
                fail("replay failed", f"GET {url}: {exc!r}", run_id)
                continue
            resumable = bool((r["kwargs"] or {}).get("stream_resumable"))
            if not resumable:
                rows = [(None, e, d) for _, e, d in rows]
            if replay != rows:
                fail(
                    "replay differs from the stored events",
                    f"run {run_id} ({r['status']}): replay {len(replay)} events, last"
                    f" {_short(replay[-1] if replay else None, 200)}; stored {len(rows)},"
                    f" last {_short(rows[-1] if rows else None, 200)}",
                    run_id,
                )

    # ---- refunds
    refunds = chaos.query(
        "SELECT refund_id::text, thread_id, order_id, amount_cents, approval_id::text,"
        " tool_call_id, run_id::text, request_id, approved_by FROM refunds"
    )
    by_thread: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in refunds:
        by_thread[f["thread_id"]].append(f)
    per_action: dict[tuple[Any, Any], int] = defaultdict(int)
    for f in refunds:
        if f["approval_id"]:
            per_action[(f["approval_id"], f["tool_call_id"])] += 1
    for (approval, call), n in per_action.items():
        if n > 1:
            fail("refund duplicated", f"{n} refunds for approval {approval} action {call}")
    for tid, rows in by_thread.items():
        if len(rows) > 1:
            fail(
                "refund duplicated",
                f"thread {tid} (one request) has {len(rows)} refunds: {_short(rows, 500)}",
                *{f["run_id"] for f in rows},
            )
    actions = {
        (a["approval_id"], a["tool_call_id"]): a
        for a in chaos.query(
            "SELECT x.approval_id::text, x.tool_call_id, x.released_order_id,"
            " x.released_amount_cents, a.status, a.resume_run_id::text, a.thread_id::text"
            " FROM approval_actions x JOIN approvals a USING (approval_id)"
        )
    }
    for f in refunds:
        label = (
            f"refund {f['refund_id']} of {f['amount_cents']} on {f['order_id']} (thread"
            f" {f['thread_id']}, run {f['run_id']})"
        )
        run = runs.get(f["run_id"] or "")
        if run is None or run["thread_id"] != f["thread_id"]:
            fail("refund without its run", f"{label}: run not found on that thread")
        if f["amount_cents"] <= THRESHOLD_CENTS:
            continue
        action = actions.get((f["approval_id"], f["tool_call_id"]))
        if (
            action is None
            or action["status"] not in ("approved", "edited")
            or action["released_order_id"] != f["order_id"]
            or action["released_amount_cents"] != f["amount_cents"]
        ):
            fail(
                "refund above threshold without a released approval action",
                f"{label}: approval action {_short(action)}",
                f["run_id"],
            )
        elif action["resume_run_id"] != f["run_id"]:
            fail(
                "refund above threshold not made by the approval's resume run",
                f"{label}: the approval's resume run is {action['resume_run_id']}",
                f["run_id"],
            )
    for job in chaos.jobs:
        rows = by_thread.get(job.thread_id, [])
        if job.decision == "reject" and job.approval_id and rows:
            fail(
                "refund despite a rejection",
                f"job {job.client}.{job.number}: approval {job.approval_id} rejected, refunds"
                f" {_short(rows)}",
                *job.run_ids,
            )
        wanted = job.edited_cents if job.decision == "edit" else job.amount_cents
        if (
            job.approval_id
            and job.decision in ("approve", "edit")
            and rows
            and rows[0]["amount_cents"] != wanted
        ):
            fail(
                "refund of another amount than released",
                f"job {job.client}.{job.number}: {job.decision} released {wanted} cents,"
                f" refund {_short(rows)}",
                *job.run_ids,
            )
    for run_id, r in runs.items():
        response = (r["output"] or {}).get("response") if isinstance(r["output"], dict) else None
        for a in (response or {}).get("actions") or []:
            if (
                not isinstance(a, dict)
                or a.get("name") != "issue_refund"
                or a.get("status") != "executed"
            ):
                continue
            args = a.get("args") or {}
            mine = [
                f
                for f in by_thread.get(r["thread_id"], [])
                if f["order_id"] == args.get("order_id")
            ]
            if len(mine) != 1:
                fail(
                    "reported refund not in the database",
                    f"run {run_id} reports {_short(a)}; refunds on the thread: {_short(mine)}",
                    run_id,
                )

    # ---- approvals
    approvals = chaos.query(
        "SELECT approval_id::text, thread_id::text, interrupt_id, status, resume_run_id::text"
        " FROM approvals"
    )
    by_tid: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for a in approvals:
        by_tid[a["thread_id"]].append(a)
        if a["status"] in ("approved", "edited", "rejected"):
            resume = runs.get(a["resume_run_id"] or "")
            if resume is None or resume["thread_id"] != a["thread_id"]:
                fail(
                    "decided approval without its resume run",
                    f"approval {a['approval_id']} ({a['status']}) names resume run"
                    f" {a['resume_run_id']}, not on thread {a['thread_id']}",
                )
    interrupted = {r["thread_id"] for r in runs.values() if r["status"] == "interrupted"}
    threads = sorted(interrupted | {a["thread_id"] for a in approvals if a["status"] == "pending"})
    async with httpx.AsyncClient(timeout=30.0) as http:
        for tid in threads:
            resp = await http.get(
                f"{chaos.replicas[0].url}/threads/{tid}/state",
                headers={"x-api-key": chaos.keys["admin"]},
            )
            if resp.status_code != 200:
                fail("thread state unreadable", f"thread {tid}: {resp.status_code} {resp.text}")
                continue
            waiting = resp.json().get("interrupts") or []
            waits = {str(i.get("id")) for i in waiting}
            for a in by_tid.get(tid, []):
                if a["status"] == "pending" and a["interrupt_id"] not in waits:
                    fail(
                        "phantom approval",
                        f"approval {a['approval_id']} on thread {tid} is pending, but its"
                        f" interrupt {a['interrupt_id']} does not wait (waiting {sorted(waits)})",
                    )
            for i in waiting:
                value = i.get("value")
                if not (isinstance(value, dict) and "action_requests" in value):
                    continue
                pending = [
                    a
                    for a in by_tid.get(tid, [])
                    if a["interrupt_id"] == str(i.get("id")) and a["status"] == "pending"
                ]
                if len(pending) != 1:
                    fail(
                        "waiting interrupt without exactly one pending approval",
                        f"thread {tid} waits on {i.get('id')} with {len(pending)} pending"
                        f" approval(s): {_short(by_tid.get(tid, []))}",
                    )

    # ---- HTTP
    for line in chaos.server_errors:
        fail("server error", line)


__all__ = ["check"]
