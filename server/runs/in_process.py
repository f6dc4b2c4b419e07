"""Decisions for a graph driven in process (the eval runner), through the service's own path."""

from __future__ import annotations

import uuid
from typing import Any

from core.identity import Principal
from server import threads_repo
from server.approvals import record_pending
from server.decisions import bind_resume


async def decide_in_process(
    pool: Any,
    graph: Any,
    *,
    thread_id: uuid.UUID,
    principal: Principal,
    requester: str,
    decisions: list[dict[str, Any]],
) -> dict[str, Any]:
    """Record a reviewer's decisions for a graph driven in process (the eval runner).

    Registers the thread in the requester's tenant if needed, records its waiting approval
    and binds the decisions exactly as a resume through the runs API would; returns the resume
    to pass as `Command(resume=...)`. The refund is released by the decided row, not by this.
    """
    state = await graph.aget_state({"configurable": {"thread_id": str(thread_id)}})
    async with pool.connection() as conn, conn.transaction():
        thread = await threads_repo.get_thread(conn, thread_id, lock=True)
        if thread is None:
            await threads_repo.insert_thread(
                conn, thread_id, tenant_id=principal.tenant_id, owner_id=requester
            )
            thread = await threads_repo.get_thread(conn, thread_id, lock=True)
        await record_pending(
            conn,
            run={"thread_id": thread_id, "tenant_id": principal.tenant_id, "owner_id": requester},
            thread=dict(thread or {}),
            interrupts=[{"value": i.value, "id": i.id} for i in state.interrupts],
            state=state,
        )
        bound = await bind_resume(
            conn,
            principal=principal,
            thread_id=thread_id,
            resume={"decisions": decisions},
            waiting=list(state.interrupts),
            run_id=uuid.uuid4(),
        )
    return bound.command_resume
