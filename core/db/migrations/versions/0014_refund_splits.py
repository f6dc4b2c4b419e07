"""Splitting a refund does not avoid a person: the 24-hour rule, enforced by Postgres.

Revision ID: 0014
Revises: 0008
Create Date: 2026-12-04

Approval Matrix note 1: amounts are per request, and splitting a request to stay under the
threshold is a policy violation. A refund at or under the threshold now also needs a released
approval when, on the same order, within the last 24 hours (any thread, any requester):

- a person rejected a refund (`refund_rejections`, written by a trigger on
  `approval_actions` whenever an `issue_refund` action is decided `reject`), or
- its amount plus the order's other refunds exceed the threshold.

`refund_split_reason(order, cents, exclude)` says why (or NULL); the `refunds_require_authority`
trigger, `PgOrderStore.issue_refund` and guard_tools all ask it, so there is one rule. The
trigger now locks the order row (`FOR UPDATE`, as the store's issue path already does), so
two concurrent refunds of one order are serialized and the second one sees the first.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_AUTHORITY = """
        CREATE OR REPLACE FUNCTION refunds_require_authority() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            threshold bigint;
            order_status text;
            order_currency text;
            split text;
            a record;
        BEGIN
            -- Serializes the refunds of one order (the store's issue path holds this lock
            -- already), so a concurrent refund is counted by refund_split_reason.
            SELECT status, currency INTO order_status, order_currency
              FROM orders WHERE order_id = NEW.order_id FOR UPDATE;

            IF order_status IS NULL OR order_status NOT IN ('shipped', 'delivered') THEN
                RAISE EXCEPTION 'refund refused: order % was never captured (status %)',
                    NEW.order_id, coalesce(order_status, 'missing')
                    USING ERRCODE = 'check_violation';
            END IF;
            SELECT approval_threshold_cents INTO threshold FROM refund_policy;
            -- No policy row: every refund needs a person (fail closed).
            IF threshold IS NOT NULL AND NEW.amount_cents <= threshold THEN
                -- An update that neither moves the refund nor raises it splits nothing.
                IF TG_OP = 'UPDATE' AND NEW.order_id = OLD.order_id
                   AND NEW.amount_cents <= OLD.amount_cents THEN
                    RETURN NEW;
                END IF;
                split := refund_split_reason(NEW.order_id, NEW.amount_cents,
                    CASE WHEN TG_OP = 'UPDATE' THEN OLD.refund_id END);
                IF split IS NULL THEN
                    RETURN NEW;
                END IF;
            END IF;

            IF NEW.approval_id IS NULL OR NEW.tool_call_id IS NULL THEN
                IF split IS NOT NULL THEN
                    RAISE EXCEPTION 'refund refused: it needs a person''s approval and names'
                        ' none: it %', split USING ERRCODE = 'check_violation';
                END IF;
                RAISE EXCEPTION 'refund refused: % cents is above the approval threshold and'
                    ' names no approval', NEW.amount_cents USING ERRCODE = 'check_violation';
            END IF;

            SELECT p.status, p.thread_id, p.tenant_id, p.requester_id, p.decided_by,
                   p.decided_at, p.decider_role, p.decider_tenant, p.comment,
                   x.decision, x.released_order_id, x.released_amount_cents,
                   x.released_args_hash
              INTO a
              FROM approvals p
              JOIN approval_actions x ON x.approval_id = p.approval_id
             WHERE p.approval_id = NEW.approval_id AND x.tool_call_id = NEW.tool_call_id
               FOR SHARE OF p;
            IF NOT FOUND
               OR a.status NOT IN ('approved', 'edited')
               OR a.decision NOT IN ('approve', 'edit')
               OR a.thread_id::text <> NEW.thread_id
               OR a.released_order_id IS DISTINCT FROM NEW.order_id
               OR a.released_amount_cents IS DISTINCT FROM NEW.amount_cents
               OR a.released_args_hash IS DISTINCT FROM NEW.args_hash
               OR a.decided_by IS NULL OR a.decided_by = a.requester_id
               OR a.decider_role NOT IN ('approver', 'admin')
               OR a.decider_tenant IS DISTINCT FROM a.tenant_id
            THEN
                RAISE EXCEPTION 'refund refused: approval % does not release this refund',
                    NEW.approval_id USING ERRCODE = 'check_violation';
            END IF;
            -- The audit copies the decision; no caller can name another reviewer.
            NEW.requested_by := a.requester_id;
            NEW.approved_by := a.decided_by;
            NEW.decided_by := a.decided_by;
            NEW.decided_at := a.decided_at;
            NEW.comment := a.comment;
            RETURN NEW;
        END;
        $$
        """
"""`refunds_require_authority()`: 0007's rules, plus the split rule under the order lock."""

_AUTHORITY_0007 = """
        CREATE OR REPLACE FUNCTION refunds_require_authority() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            threshold bigint;
            order_status text;
            order_currency text;
            split text;
            a record;
        BEGIN
            SELECT status, currency INTO order_status, order_currency
              FROM orders WHERE order_id = NEW.order_id;

            IF order_status IS NULL OR order_status NOT IN ('shipped', 'delivered') THEN
                RAISE EXCEPTION 'refund refused: order % was never captured (status %)',
                    NEW.order_id, coalesce(order_status, 'missing')
                    USING ERRCODE = 'check_violation';
            END IF;
            SELECT approval_threshold_cents INTO threshold FROM refund_policy;
            -- No policy row: every refund needs a person (fail closed).
            IF threshold IS NOT NULL AND NEW.amount_cents <= threshold THEN
                RETURN NEW;
            END IF;

            IF NEW.approval_id IS NULL OR NEW.tool_call_id IS NULL THEN
                RAISE EXCEPTION 'refund refused: % cents is above the approval threshold and'
                    ' names no approval', NEW.amount_cents USING ERRCODE = 'check_violation';
            END IF;

            SELECT p.status, p.thread_id, p.tenant_id, p.requester_id, p.decided_by,
                   p.decided_at, p.decider_role, p.decider_tenant, p.comment,
                   x.decision, x.released_order_id, x.released_amount_cents,
                   x.released_args_hash
              INTO a
              FROM approvals p
              JOIN approval_actions x ON x.approval_id = p.approval_id
             WHERE p.approval_id = NEW.approval_id AND x.tool_call_id = NEW.tool_call_id
               FOR SHARE OF p;
            IF NOT FOUND
               OR a.status NOT IN ('approved', 'edited')
               OR a.decision NOT IN ('approve', 'edit')
               OR a.thread_id::text <> NEW.thread_id
               OR a.released_order_id IS DISTINCT FROM NEW.order_id
               OR a.released_amount_cents IS DISTINCT FROM NEW.amount_cents
               OR a.released_args_hash IS DISTINCT FROM NEW.args_hash
               OR a.decided_by IS NULL OR a.decided_by = a.requester_id
               OR a.decider_role NOT IN ('approver', 'admin')
               OR a.decider_tenant IS DISTINCT FROM a.tenant_id
            THEN
                RAISE EXCEPTION 'refund refused: approval % does not release this refund',
                    NEW.approval_id USING ERRCODE = 'check_violation';
            END IF;
            -- The audit copies the decision; no caller can name another reviewer.
            NEW.requested_by := a.requester_id;
            NEW.approved_by := a.decided_by;
            NEW.decided_by := a.decided_by;
            NEW.decided_at := a.decided_at;
            NEW.comment := a.comment;
            RETURN NEW;
        END;
        $$
        """
"""0007's `refunds_require_authority()`, restored by the downgrade."""


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE refund_rejections (
            approval_id  uuid NOT NULL,
            tool_call_id text NOT NULL,
            order_id     text NOT NULL,
            amount_cents bigint,
            rejected_at  timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (approval_id, tool_call_id)
        )
        """
    )
    op.execute(
        "CREATE INDEX refund_rejections_order_idx ON refund_rejections (order_id, rejected_at)"
    )
    op.execute("CREATE INDEX refunds_order_created_idx ON refunds (order_id, created_at)")
    op.execute(
        """
        CREATE FUNCTION approval_actions_record_rejection() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO refund_rejections (approval_id, tool_call_id, order_id, amount_cents)
            VALUES (NEW.approval_id, NEW.tool_call_id, upper(NEW.args->>'order_id'),
                CASE WHEN NEW.args->>'amount' ~ '^[0-9]{1,12}([.][0-9]{1,2})?$'
                         THEN round((NEW.args->>'amount')::numeric * 100)::bigint END)
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END;
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER approval_actions_record_rejection"
        " AFTER INSERT OR UPDATE OF decision ON approval_actions FOR EACH ROW"
        " WHEN (NEW.decision = 'reject' AND NEW.name = 'issue_refund'"
        " AND NEW.args->>'order_id' IS NOT NULL)"
        " EXECUTE FUNCTION approval_actions_record_rejection()"
    )
    # Rejections decided before this revision count too (those of the window matter).
    op.execute(
        """
        INSERT INTO refund_rejections (approval_id, tool_call_id, order_id, amount_cents,
                                       rejected_at)
        SELECT x.approval_id, x.tool_call_id, upper(x.args->>'order_id'),
               CASE WHEN x.args->>'amount' ~ '^[0-9]{1,12}([.][0-9]{1,2})?$'
                    THEN round((x.args->>'amount')::numeric * 100)::bigint END,
               coalesce(p.decided_at, now())
          FROM approval_actions x JOIN approvals p ON p.approval_id = x.approval_id
         WHERE x.decision = 'reject' AND x.name = 'issue_refund'
           AND x.args->>'order_id' IS NOT NULL
        ON CONFLICT DO NOTHING
        """
    )
    op.execute(
        """
        CREATE FUNCTION refund_split_reason(p_order_id text, p_amount_cents bigint,
                                            p_exclude uuid DEFAULT NULL) RETURNS text
        LANGUAGE plpgsql AS $$
        DECLARE
            threshold bigint;
            currency text;
            rejected_cents bigint;
            rejected_count bigint;
            earlier bigint;
        BEGIN
            SELECT approval_threshold_cents INTO threshold FROM refund_policy;
            SELECT o.currency INTO currency FROM orders o WHERE o.order_id = p_order_id;
            SELECT count(*), max(amount_cents) INTO rejected_count, rejected_cents
              FROM refund_rejections
             WHERE order_id = upper(p_order_id)
               AND rejected_at > now() - interval '24 hours';
            IF rejected_count > 0 THEN
                RETURN 'splits a ' || coalesce(
                    to_char(rejected_cents / 100.0, 'FM999999999990.00') || ' ' || currency
                    || ' ', '') || 'refund of ' || p_order_id
                    || ' that a reviewer rejected in the last 24 hours';
            END IF;
            IF threshold IS NULL THEN
                RETURN NULL;
            END IF;
            SELECT coalesce(sum(amount_cents), 0)::bigint INTO earlier
              FROM refunds
             WHERE order_id = p_order_id
               AND created_at > now() - interval '24 hours'
               AND refund_id IS DISTINCT FROM p_exclude;
            IF earlier > 0 AND earlier + p_amount_cents > threshold THEN
                RETURN 'adds to ' || to_char(earlier / 100.0, 'FM999999999990.00') || ' '
                    || currency || ' refunded on ' || p_order_id
                    || ' in the last 24 hours: together '
                    || to_char((earlier + p_amount_cents) / 100.0, 'FM999999999990.00') || ' '
                    || currency || ', above the '
                    || to_char(threshold / 100.0, 'FM999999999990.00') || ' ' || currency
                    || ' approval threshold';
            END IF;
            RETURN NULL;
        END;
        $$
        """
    )
    op.execute(_AUTHORITY)


def downgrade() -> None:
    op.execute(_AUTHORITY_0007)
    op.execute("DROP FUNCTION IF EXISTS refund_split_reason(text, bigint, uuid)")
    op.execute("DROP TRIGGER IF EXISTS approval_actions_record_rejection ON approval_actions")
    op.execute("DROP FUNCTION IF EXISTS approval_actions_record_rejection()")
    op.execute("DROP INDEX IF EXISTS refunds_order_created_idx")
    op.execute("DROP TABLE IF EXISTS refund_rejections")
