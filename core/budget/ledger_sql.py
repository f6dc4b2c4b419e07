"""The usage ledger's SQL: ledger rows and the per-window budget counters they move.

A ledger row is charged to one counter per scope (`budget_counters`, migration 0010): its
tenant's UTC month, its user's UTC day and, when it has one, its thread (window start
1970-01-01), each window taken from the row's `created_at`. Every statement that changes a
row applies the change to those counters in the same statement, so that for each counter

    spent_usd    = sum(cost_usd)     of its rows with status 'settled'
    reserved_usd = sum(reserved_usd) of its rows that hold their reservation: status
                   'reserved', `held_until` set (at reserve), `expired_at` not (by the sweep)

(over the rows this module wrote, and the settled rows the migration's backfill counted).

Counter rows are locked in one order, (scope, tenant_id, subject, window_start), by every
statement, so concurrent reservations, settlements and sweeps never deadlock.
"""

from __future__ import annotations

_SCOPES = """
    scopes (scope, subject, window_start, limit_usd) AS (
        VALUES ('tenant_month', '', date_trunc('month', now(), 'UTC'),
                %(tenant_month_limit)s::numeric),
               ('thread', %(thread)s::text, 'epoch'::timestamptz, %(thread_limit)s::numeric),
               ('user_day', %(user)s::text, date_trunc('day', now(), 'UTC'),
                %(user_day_limit)s::numeric)
    ), charged_to AS (
        SELECT s.*, COALESCE(c.spent_usd + c.reserved_usd, 0) AS usd
        FROM scopes s
        LEFT JOIN budget_counters c
               ON (c.scope, c.tenant_id, c.subject, c.window_start)
                  = (s.scope, %(tenant)s, s.subject, s.window_start)
        WHERE s.subject IS NOT NULL
    )
"""
"""The counters a call of (tenant, user, thread) now is charged to, their limits and spend."""

_KEYS_OF_ROW = """
    CROSS JOIN LATERAL (VALUES
        ('tenant_month', '', date_trunc('month', r.created_at, 'UTC')),
        ('thread', r.thread_id, 'epoch'::timestamptz),
        ('user_day', r.user_id, date_trunc('day', r.created_at, 'UTC'))
    ) AS k (scope, subject, window_start)
"""
"""The counters of ledger row `r` (with `r.tenant_id`); `k.subject` is null for no thread."""

_HELD = "r.status = 'reserved' AND r.held_until IS NOT NULL AND r.expired_at IS NULL"
"""Ledger row `r` holds its reservation (stale past `held_until`; the partial index's rows)."""

SPEND = f"""
    WITH {_SCOPES}, stale AS (
        SELECT k.scope, sum(r.reserved_usd) AS usd
        FROM usage_ledger r {_KEYS_OF_ROW}
        JOIN charged_to t USING (scope, subject, window_start)
        WHERE {_HELD} AND r.held_until < now() AND r.tenant_id = %(tenant)s
        GROUP BY k.scope
    )
    SELECT t.scope, t.usd, COALESCE(s.usd, 0) AS stale_usd
    FROM charged_to t LEFT JOIN stale s USING (scope)
"""  # noqa: S608
"""Spend (settled plus held reservations) of each scope of a payer, from the counters, and
how much of it is held by stale reservations (few rows: the partial index of held ones)."""

RESERVE = """
    SELECT scope, usd, granted, call_id
    FROM budget_reserve(%(tenant)s, %(user)s, %(thread)s, %(tenant_month_limit)s,
                        %(thread_limit)s, %(user_day_limit)s, %(usd)s, %(run)s, %(model)s,
                        %(route)s, %(input)s, %(max_output)s, %(ttl)s)
"""
"""Reserve `usd` on every counter of the call if every limit allows it (migration 0012's
`budget_reserve`): one row per scope with its spend before the call and whether it fit, and
the new ledger row's `call_id` (null when refused: then nothing was charged).

One statement in autocommit: the counter rows stay locked only while the function runs, in
the lock order below, and each limit is compared with the row's latest version.
"""

_APPLY = f"""
    , deltas AS (
        SELECT k.scope, r.tenant_id, k.subject, k.window_start,
               sum(r.d_reserved) AS d_reserved, sum(r.d_spent) AS d_spent
        FROM changed r {_KEYS_OF_ROW}
        WHERE k.subject IS NOT NULL
        GROUP BY 1, 2, 3, 4
    ), locked AS (
        SELECT d.*
        FROM budget_counters c
        JOIN deltas d USING (scope, tenant_id, subject, window_start)
        ORDER BY scope, tenant_id, subject, window_start
        FOR UPDATE OF c
    ), applied AS (
        UPDATE budget_counters c
        SET reserved_usd = c.reserved_usd + l.d_reserved, spent_usd = c.spent_usd + l.d_spent
        FROM locked l
        WHERE (c.scope, c.tenant_id, c.subject, c.window_start)
              = (l.scope, l.tenant_id, l.subject, l.window_start)
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM changed) AS rows
"""  # noqa: S608
"""Add the `changed` rows' `d_reserved` and `d_spent` to their counters (in lock order)."""

SETTLE = f"""
    WITH changed AS (
        UPDATE usage_ledger r
        SET status = 'settled', input_tokens = %(input)s, output_tokens = %(output)s,
            cached_input_tokens = %(cached)s, cost_usd = %(usd)s, usage_source = %(source)s,
            settled_at = now()
        WHERE call_id = %(call_id)s AND status = 'reserved'
        RETURNING tenant_id, user_id, thread_id, created_at, cost_usd AS d_spent,
                  CASE WHEN r.held_until IS NOT NULL AND r.expired_at IS NULL
                       THEN -r.reserved_usd ELSE 0 END AS d_reserved
    ){_APPLY}"""  # noqa: S608
"""Settle one reservation: its cost counts, its reservation (unless expired) no longer."""

RELEASE = f"""
    WITH changed AS (
        UPDATE usage_ledger r SET status = 'released', cost_usd = 0, settled_at = now()
        WHERE call_id = %(call_id)s AND status = 'reserved'
        RETURNING tenant_id, user_id, thread_id, created_at, 0::numeric AS d_spent,
                  CASE WHEN r.held_until IS NOT NULL AND r.expired_at IS NULL
                       THEN -r.reserved_usd ELSE 0 END AS d_reserved
    ){_APPLY}"""  # noqa: S608
"""Release one reservation: the call failed and costs nothing."""

SWEEP = f"""
    WITH stale AS (
        SELECT call_id FROM usage_ledger r
        WHERE {_HELD} AND r.held_until < now()
        ORDER BY call_id
        FOR UPDATE SKIP LOCKED
    ), changed AS (
        UPDATE usage_ledger l SET expired_at = now()
        FROM stale WHERE l.call_id = stale.call_id
        RETURNING l.tenant_id, l.user_id, l.thread_id, l.created_at, 0::numeric AS d_spent,
                  -l.reserved_usd AS d_reserved
    ){_APPLY}"""  # noqa: S608
"""Stop counting every reservation past its `held_until` (its process died before settling)."""

SUMMARY = """
    SELECT {group} model, count(*) FILTER (WHERE status = 'settled') AS calls,
           COALESCE(sum(input_tokens), 0)::bigint AS input_tokens,
           COALESCE(sum(output_tokens), 0)::bigint AS output_tokens,
           COALESCE(sum(cost_usd) FILTER (WHERE status = 'settled'), 0) AS cost_usd,
           COALESCE(sum(reserved_usd) FILTER (WHERE status = 'reserved'), 0) AS reserved_usd
    FROM usage_ledger
    WHERE tenant_id = %(tenant)s
      AND (%(user)s::text IS NULL OR user_id = %(user)s::text)
      AND created_at >= %(since)s AND created_at < %(until)s
    GROUP BY {group} model
    ORDER BY {group} model
"""
"""Usage per model (and user) of a tenant in [since, until), from the ledger rows."""

__all__ = ["RELEASE", "RESERVE", "SETTLE", "SPEND", "SUMMARY", "SWEEP"]
