"""SQL of the runs engine, one module per table or concern, re-exported here as `repo.*`.

`runs` (API side), `leases` (worker side), `events` (`run_events`), `checkpoints` (raw SQL on
LangGraph's tables), `housekeeping` and `channels` (NOTIFY). Thread rows belong to
`server.threads_repo`. Every function takes an open connection (autocommit, dict rows; see
`core.db.pool`), so callers compose them inside one `conn.transaction()` where atomicity matters.
"""

from core.db.pool import Conn
from server.runs.repo.channels import (
    CANCEL_CHANNEL,
    EVENTS_CHANNEL,
    EVENTS_ONLY,
    RUNS_CHANNEL,
    STREAM_CHANNEL,
    end_payload,
    notify,
    parse_end,
)
from server.runs.repo.checkpoints import delete_run_checkpoints, latest_checkpoint_not_of
from server.runs.repo.events import (
    EventRow,
    insert_events,
    live_edge,
    mark_live,
    max_seq,
    next_seq,
    step_events_of,
    tail_events,
    want_live,
)
from server.runs.repo.housekeeping import expired_temporary_threads, purge_events
from server.runs.repo.leases import (
    cancel_action_of,
    claim_next,
    finish_run,
    held_run,
    release_run,
    renew_leases,
    requeue_expired,
)
from server.runs.repo.runs import (
    RUN_COLUMNS,
    active_runs,
    cancel_pending,
    delete_run,
    get_output,
    get_run,
    insert_run,
    latest_input_run,
    list_runs,
    request_cancel,
    run_by_request_key,
    run_side_effects,
)

__all__ = [
    "CANCEL_CHANNEL",
    "EVENTS_CHANNEL",
    "EVENTS_ONLY",
    "RUNS_CHANNEL",
    "RUN_COLUMNS",
    "STREAM_CHANNEL",
    "Conn",
    "EventRow",
    "active_runs",
    "cancel_action_of",
    "cancel_pending",
    "claim_next",
    "delete_run",
    "delete_run_checkpoints",
    "end_payload",
    "expired_temporary_threads",
    "finish_run",
    "get_output",
    "get_run",
    "held_run",
    "insert_events",
    "insert_run",
    "latest_checkpoint_not_of",
    "latest_input_run",
    "list_runs",
    "live_edge",
    "mark_live",
    "max_seq",
    "next_seq",
    "notify",
    "parse_end",
    "purge_events",
    "release_run",
    "renew_leases",
    "request_cancel",
    "requeue_expired",
    "run_by_request_key",
    "run_side_effects",
    "step_events_of",
    "tail_events",
    "want_live",
]
