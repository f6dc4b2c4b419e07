"""Mark as resolved: `command.goto: "__end__"` on a thread that waits for an approval.

agent-chat-ui's "Mark as resolved" button sends `{"command": {"goto": "__end__"}}`. LangGraph
itself ignores a jump to `__end__` while an interrupt waits (the interrupt is raised again, so
the thread stays interrupted). Steward gives the button its meaning: the person closes the
pending approval without releasing anything. The request becomes a resume that rejects every
held action. The rejection is recorded on the approval row, by that person, with the comment
"marked as resolved". The graph then tells the customer that nothing was executed, and the
thread ends idle.

Who may do this: an approver or admin of the thread's tenant. This is the same rule as for
any other decision on an approval; a user gets 403. A thread that waits for no approval has
nothing to resolve (409). Any other `goto` steers the graph and stays admin-only.
"""

from __future__ import annotations

from typing import Any

from langgraph.constants import END
from langgraph.types import StateSnapshot

from core.errors import Conflict, Forbidden
from core.identity import Principal
from server.decisions import is_approval_request
from server.runs.models import CommandBody

RESOLVED_COMMENT = "marked as resolved; no action taken"


def is_resolve(command: CommandBody | None) -> bool:
    """True for a command that only jumps to the end (`{"goto": "__end__"}`)."""
    return (
        command is not None
        and command.goto == END
        and command.resume is None
        and command.update is None
    )


def resolution(principal: Principal, state: StateSnapshot | None) -> CommandBody:
    """The resume that closes the waiting approval: one rejection per held action.

    Raises:
        Forbidden: the caller is not an approver or admin of the tenant.
        Conflict: no approval waits on the thread.
    """
    waiting = [i for i in (state.interrupts if state else ()) if is_approval_request(i.value)]
    if not waiting:
        raise Conflict(
            'command.goto "__end__" marks a thread that waits for an approval as resolved; '
            "this thread waits for none"
        )
    if not principal.is_approver:
        raise Forbidden(
            "marking a thread as resolved closes its pending approval: "
            "it requires role approver or admin"
        )
    interrupt = waiting[0]
    held: list[Any] = interrupt.value["action_requests"]
    rejection = {"type": "reject", "message": RESOLVED_COMMENT}
    resume = {"decisions": [rejection for _ in held]}
    return CommandBody(resume={interrupt.id: resume} if len(waiting) > 1 else resume)


__all__ = ["RESOLVED_COMMENT", "is_resolve", "resolution"]
