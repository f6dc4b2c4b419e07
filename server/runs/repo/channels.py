"""The NOTIFY channels of the runs engine and the one way to send on them."""

from __future__ import annotations

from core.db.pool import Conn

RUNS_CHANNEL = "steward_runs"
"""NOTIFY channel: a run became claimable (payload ignored)."""
EVENTS_CHANNEL = "steward_run_events"
"""NOTIFY channel: news of run `<run_id>` (its status may have changed), or, with the payload
`<run_id>` + `EVENTS_ONLY`, only new events (waiters on the run's end stay asleep)."""
EVENTS_ONLY = ":events"
"""Payload suffix on `EVENTS_CHANNEL`: new events, the run's status did not change."""
CANCEL_CHANNEL = "steward_run_cancel"
"""NOTIFY channel: run `<run_id>:<action>` should be cancelled by whoever executes it."""


async def notify(conn: Conn, channel: str, payload: str = "") -> None:
    """Send a NOTIFY (delivered when the surrounding transaction commits)."""
    await conn.execute("SELECT pg_notify(%s, %s)", (channel, payload))
