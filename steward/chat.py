"""`steward chat`: a terminal conversation over the real graph.

Actions that need a person are shown and declined: only the approval queue of `steward serve`
releases them, by an approver who is not the requester.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.types import Command
from pydantic import ValidationError
from rich.console import Console

from graph.builder import DURABILITY
from graph.context import RunContext
from graph.observer import instrument_run_config
from graph.runtime import Runtime

Ask = Callable[[str], Awaitable[str]]


async def ask_stdin(prompt: str) -> str:
    """Read a line from the terminal without blocking the event loop."""
    return await asyncio.to_thread(input, prompt)


QUEUE_NOTE = (
    "An action above the approval threshold is released only by an approver's decision in "
    "the approval queue of `steward serve` (four eyes); the terminal chat has no second "
    "person, so it declines the action here. Ask for it through the HTTP API to have it "
    "reviewed."
)


async def ask_decision(request: dict[str, Any], ask: Ask, console: Console) -> dict[str, Any]:
    """Show each held action and decline it: releasing it needs the approval queue."""
    decisions: list[dict[str, Any]] = []
    for action in request["action_requests"]:
        console.print(f"[bold yellow]Approval needed:[/] {action['description']}")
        console.print(f"[yellow]{QUEUE_NOTE}[/]")
        decisions.append({"type": "reject", "message": "needs an approver in the approval queue"})
    return {"decisions": decisions}


def render(values: dict[str, Any], console: Console) -> None:
    """Print the turn's answer, its sources and what happened to each action."""
    response = values.get("response") or {}
    console.print(f"[bold green]steward>[/] {response.get('answer', '')}")
    if response.get("sources"):
        console.print(f"[dim]sources: {', '.join(response['sources'])}[/]")
    for action in response.get("actions", []):
        console.print(f"[dim]action {action['name']}: {action['status']} ({action['detail']})[/]")


async def run_turn(
    runtime: Runtime,
    thread_id: str,
    text: str,
    *,
    ask: Ask,
    console: Console,
    user_id: str = "operator",
) -> dict[str, Any]:
    """Run one user turn to completion, resolving approvals interactively."""
    config: RunnableConfig = instrument_run_config(
        {"configurable": {"thread_id": thread_id}},
        run_id=str(uuid.uuid4()),
        thread_id=thread_id,
        user_id=user_id,
    )
    context = RunContext(user_id=user_id)
    payload: Any = {"messages": [{"role": "user", "content": text}]}
    request: dict[str, Any] | None = None
    while True:
        try:
            values: dict[str, Any] = await runtime.graph.ainvoke(
                payload, config, context=context, durability=DURABILITY
            )
        except ValidationError as exc:
            if request is None:
                raise
            console.print(f"[red]That decision was not valid: {exc.errors()[0]['msg']}[/]")
            payload = Command(resume=await ask_decision(request, ask, console))
            continue
        interrupts = values.get("__interrupt__")
        if not interrupts:
            render(values, console)
            return values
        request = interrupts[0].value
        payload = Command(resume=await ask_decision(request, ask, console))


async def chat_loop(
    runtime: Runtime, *, ask: Ask = ask_stdin, console: Console | None = None
) -> None:
    """Talk to the agent until the operator types /quit or closes the input."""
    console = console or Console()
    thread_id = str(uuid.uuid4())
    console.print(f"[bold]Steward chat[/] (thread {thread_id}); /quit to leave.")
    while True:
        try:
            text = await ask("you> ")
        except EOFError:
            return
        if text.strip() in {"/quit", "/exit"}:
            return
        await run_turn(runtime, thread_id, text, ask=ask, console=console)
