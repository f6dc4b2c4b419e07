"""One authority for high-risk actions: decided approval rows, enforced by Postgres itself.

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-02

- `refund_policy`: the approval threshold lives in the database (one row), written by the
  service from `STEWARD_REFUND_APPROVAL_THRESHOLD` at start; no caller passes it.
- `approval_actions`: one row per action an approval holds (tool call id, arguments and their
  hash, order and amount), with what the decision released (edited arguments included).
- `approvals`: who decided in which role and tenant; status `expired` for an approval whose
  interrupt no longer waits; four eyes as a CHECK (a release is never decided by its
  requester, and only by an approver or admin of the approval's tenant).
- `refunds`: the audit (approval, tool call, request, run, decider, decision time, comment,
  argument hash), one refund per (thread, tool call) whatever the amount, and a trigger that
  refuses, whatever the caller, a refund on an order that
  was never captured, or above the threshold without a released approval action naming
  exactly that refund; one refund per approval action.
- Approvals that released a refund survive the deletion of their thread (the audit).
- `runs.request_key`: a client's `Idempotency-Key` (or one derived from the request), so a
  re-sent request is answered by its first run.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = ("0003",)


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE refund_policy (
            singleton                boolean PRIMARY KEY DEFAULT true CHECK (singleton),
            approval_threshold_cents bigint NOT NULL CHECK (approval_threshold_cents >= 0),
            updated_at               timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    op.execute("INSERT INTO refund_policy (approval_threshold_cents) VALUES (50000)")

    op.execute("ALTER TABLE approvals DROP CONSTRAINT IF EXISTS approvals_status_check")
    op.execute(
        "ALTER TABLE approvals ADD CONSTRAINT approvals_status_check CHECK"
        " (status IN ('pending', 'approved', 'edited', 'rejected', 'expired'))"
    )
    op.execute(
        """
        ALTER TABLE approvals
            ADD COLUMN decider_role   text,
            ADD COLUMN decider_tenant text
        """
    )
    op.execute(
        """
        ALTER TABLE approvals ADD CONSTRAINT approvals_four_eyes CHECK (
            status NOT IN ('approved', 'edited')
            OR (decided_by IS NOT NULL AND decided_by <> requester_id
                AND decider_role IN ('approver', 'admin') AND decider_tenant = tenant_id)
        ) NOT VALID
        """
    )
    op.execute(
        """
        CREATE TABLE approval_actions (
            approval_id           uuid NOT NULL REFERENCES approvals (approval_id)
                                      ON DELETE CASCADE,
            position              integer NOT NULL,
            tool_call_id          text NOT NULL,
            name                  text NOT NULL,
            args                  jsonb NOT NULL,
            args_hash             text NOT NULL,
            decision              text CHECK (decision IN ('approve', 'edit', 'reject')),
            released_args         jsonb,
            released_args_hash    text,
            released_order_id     text,
            released_amount_cents bigint,
            PRIMARY KEY (approval_id, position),
            UNIQUE (approval_id, tool_call_id),
            CHECK ((decision IN ('approve', 'edit')) = (released_args_hash IS NOT NULL))
        )
        """
    )

    op.execute(
        """
        ALTER TABLE refunds
            ADD COLUMN approval_id  uuid,
            ADD COLUMN tool_call_id text,
            ADD COLUMN request_id   text,
            ADD COLUMN run_id       uuid,
            ADD COLUMN decided_by   text,
            ADD COLUMN decided_at   timestamptz,
            ADD COLUMN comment      text,
            ADD COLUMN args_hash    text
        """
    )
    op.execute(
        "CREATE UNIQUE INDEX refunds_one_per_approval_action ON refunds (approval_id, tool_call_id)"
        " WHERE approval_id IS NOT NULL"
    )
    op.execute(
        "CREATE UNIQUE INDEX refunds_one_per_tool_call ON refunds (thread_id, tool_call_id)"
        " WHERE tool_call_id IS NOT NULL"
    )
    op.execute("CREATE INDEX refunds_run_id_idx ON refunds (run_id) WHERE run_id IS NOT NULL")
    op.execute(
        """
        CREATE FUNCTION refunds_require_authority() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE
            threshold bigint;
            order_status text;
            a record;
        BEGIN
            SELECT status INTO order_status FROM orders WHERE order_id = NEW.order_id;
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
    )
    op.execute(
        "CREATE TRIGGER refunds_require_authority BEFORE INSERT OR UPDATE ON refunds"
        " FOR EACH ROW EXECUTE FUNCTION refunds_require_authority()"
    )

    # The audit outlives the conversation: deleting a thread deletes its approvals, except
    # those that released a refund (the refund row names them).
    op.execute("ALTER TABLE approvals DROP CONSTRAINT IF EXISTS approvals_thread_id_fkey")
    op.execute(
        """
        CREATE FUNCTION threads_prune_approvals() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM approvals a
             WHERE a.thread_id = OLD.thread_id
               AND NOT EXISTS (SELECT 1 FROM refunds r WHERE r.approval_id = a.approval_id);
            RETURN OLD;
        END;
        $$
        """
    )
    op.execute(
        "CREATE TRIGGER threads_prune_approvals AFTER DELETE ON threads"
        " FOR EACH ROW EXECUTE FUNCTION threads_prune_approvals()"
    )

    op.execute("ALTER TABLE runs ADD COLUMN request_key text, ADD COLUMN request_hash text")
    op.execute(
        "CREATE UNIQUE INDEX runs_request_key_idx ON runs (tenant_id, owner_id, request_key)"
        " WHERE request_key IS NOT NULL"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS threads_prune_approvals ON threads")
    op.execute("DROP FUNCTION IF EXISTS threads_prune_approvals()")
    op.execute("DROP INDEX IF EXISTS runs_request_key_idx")
    op.execute(
        "ALTER TABLE runs DROP COLUMN IF EXISTS request_key, DROP COLUMN IF EXISTS request_hash"
    )
    op.execute("DROP TRIGGER IF EXISTS refunds_require_authority ON refunds")
    op.execute("DROP FUNCTION IF EXISTS refunds_require_authority()")
    op.execute("DROP INDEX IF EXISTS refunds_one_per_approval_action")
    op.execute("DROP INDEX IF EXISTS refunds_run_id_idx")
    op.execute("DROP INDEX IF EXISTS refunds_one_per_tool_call")
    op.execute(
        "ALTER TABLE refunds DROP COLUMN IF EXISTS approval_id, DROP COLUMN IF EXISTS"
        " tool_call_id, DROP COLUMN IF EXISTS request_id, DROP COLUMN IF EXISTS run_id,"
        " DROP COLUMN IF EXISTS decided_by, DROP COLUMN IF EXISTS decided_at,"
        " DROP COLUMN IF EXISTS comment, DROP COLUMN IF EXISTS args_hash"
    )
    op.execute("DROP TABLE IF EXISTS approval_actions")
    op.execute("ALTER TABLE approvals DROP CONSTRAINT IF EXISTS approvals_four_eyes")
    op.execute(
        "ALTER TABLE approvals DROP COLUMN IF EXISTS decider_role,"
        " DROP COLUMN IF EXISTS decider_tenant"
    )
    op.execute("DROP TABLE IF EXISTS refund_policy")
