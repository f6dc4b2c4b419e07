"""The NOTIFY channels of the runs engine and the one way to send on them."""

from __future__ import annotations

import uuid

from core.db.pool import Conn

RUNS_CHANNEL = "steward_runs"
"""NOTIFY channel: a run became claimable (payload ignored)."""
EVENTS_CHANNEL = "steward_run_events"
"""NOTIFY channel: news of run `<run_id>` (its status may have changed); with the payload
`<run_id>` + `EVENTS_ONLY`, only new events (waiters on the run's end stay asleep); with
`end_payload(...)`, the run ended, and how (a run that ended may also free its thread for
the next queued run: hubs treat it as a `RUNS_CHANNEL` notification too)."""
EVENTS_ONLY = ":events"
"""Payload suffix on `EVENTS_CHANNEL`: new events, the run's status did not change."""
END = ":end:"
"""Payload infix on `EVENTS_CHANNEL`: `<run_id>:end:<status>[:<output JSON>]`."""
CANCEL_CHANNEL = "steward_run_cancel"
"""NOTIFY channel: run `<run_id>:<action>` should be cancelled by whoever executes it."""
STREAM_CHANNEL = "steward_run_stream"
"""NOTIFY channel: a client joined the stream of deferred run `<run_id>`: whoever executes it
stores its events from now on as they come (`runs.events_mode`)."""
MAX_PAYLOAD = 7900
"""Bytes a payload may have (Postgres refuses 8000 and more); a longer end goes without its
output, and waiters read it from the run's row."""


async def notify(conn: Conn, channel: str, payload: str = "") -> None:
    """Send a NOTIFY (delivered when the surrounding transaction commits)."""
    await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))


def end_payload(run_id: uuid.UUID | str, status: str, output: str | None) -> str:
    """The `EVENTS_CHANNEL` payload of a run's end, with its output when that fits."""
    payload = f"{run_id}{END}{status}"
    if output is not None and len(payload.encode()) + 1 + len(output.encode()) <= MAX_PAYLOAD:
        return f"{payload}:{output}"
    return payload


def parse_end(payload: str) -> tuple[str, str, str | None] | None:
    """`(run_id, status, output or None)` of an `end_payload`; None for other payloads."""
    run_id, infix, rest = payload.partition(END)
    if not infix:
        return None
    status, colon, output = rest.partition(":")
    return run_id, status, output if colon else None
