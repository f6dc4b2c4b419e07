"""What a client may ask of a run or a state write, checked before anything is stored.

- An input is `{"messages": [...]}` with at least one new user message: an empty input, an
  unknown key or a list would re-run the last turn (and its side effects) as a new request.
- State writes (`POST /threads/{id}/state`, `command.update`) may change the conversation,
  nothing else: the channels that carry verdicts, decisions, planned actions and the response
  are the graph's own. `as_node` / `command.goto` may not name the nodes that judge, hold or
  execute tool calls.
- A request's key: the client's `Idempotency-Key`, else one derived from the id of its last
  user message; its digest tells a re-send from another request with the same key.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import orjson
from langchain_core.messages import convert_to_messages

from server.errors import Unprocessable
from server.runs.models import RunCreate

WRITABLE_CHANNELS = frozenset({"messages"})
"""State channels a client may write (everything else is the graph's)."""
PROTECTED_NODES = frozenset({"guard_tools", "approval", "run_tools"})
"""Nodes a client may not write as or jump to: they judge, hold and execute tool calls."""
USER_ROLES = frozenset({"user", "human"})
MESSAGE_ROLES = frozenset({"user", "human", "assistant", "ai", "system", "tool"})


def _role(message: Any) -> str | None:
    if isinstance(message, dict):
        role = message.get("role", message.get("type"))
        return role if isinstance(role, str) else None
    if isinstance(message, (list, tuple)) and len(message) == 2 and isinstance(message[0], str):
        return message[0]
    return None


def _content(message: Any) -> Any:
    if isinstance(message, dict):
        return message.get("content")
    if isinstance(message, (list, tuple)) and len(message) == 2:
        return message[1]
    return None


def _has_text(content: Any) -> bool:
    if isinstance(content, str):
        return bool(content.strip())
    if isinstance(content, list):
        return any(
            (isinstance(p, str) and p.strip())
            or (isinstance(p, dict) and isinstance(p.get("text"), str) and p["text"].strip())
            or (isinstance(p, dict) and p.get("type") not in (None, "text"))
            for p in content
        )
    return False


def check_messages(messages: Any, where: str, *,
                   roles: frozenset[str] = MESSAGE_ROLES) -> list[Any]:
    """Validate messages as LangChain will build them, so a bad one never reaches a checkpoint.

    A message that LangChain cannot build (an `id` that is not a string, content parts that
    are not text or blocks, a tool message without `tool_call_id`, ...) would fail the run
    after its input was stored, and every later read of the thread with it.

    Raises:
        Unprocessable: not a list, a role outside `roles`, or a message LangChain refuses.
    """
    if not isinstance(messages, list):
        raise Unprocessable(f"{where}: must be a list of messages")
    for i, message in enumerate(messages):
        role = _role(message)
        if role not in roles:
            raise Unprocessable(
                f"{where}[{i}]: role must be one of {', '.join(sorted(roles))}"
            )
        content = _content(message)
        if not isinstance(content, (str, list)):
            raise Unprocessable(f"{where}[{i}].content: must be a string or a list of parts")
        if _has_nul(message):
            raise Unprocessable(f"{where}[{i}]: NUL characters are not accepted")
        try:
            convert_to_messages([message])
        except Exception as exc:  # noqa: BLE001 - LangChain raises several types here
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise Unprocessable(f"{where}[{i}]: not a valid message ({detail})") from None
    return messages


def _has_nul(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if depth > 20:
        return False
    if isinstance(value, dict):
        return any(_has_nul(k, depth + 1) or _has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v, depth + 1) for v in value)
    return False


def check_text(value: Any, where: str) -> None:
    """Refuse NUL characters anywhere in a client value (Postgres text cannot hold them).

    Raises:
        Unprocessable: `value` holds a NUL character.
    """
    if _has_nul(value):
        raise Unprocessable(f"{where}: NUL characters are not accepted")


def check_input(value: Any) -> None:
    """An input must bring at least one new, non-empty user message and nothing else.

    Raises:
        Unprocessable: otherwise (an empty input would re-run the last turn).
    """
    if not isinstance(value, dict):
        raise Unprocessable('input: must be an object {"messages": [...]}')
    unknown = sorted(set(value) - WRITABLE_CHANNELS)
    if unknown:
        raise Unprocessable(
            f"input: unknown key(s) {', '.join(unknown)}; the graph takes `messages` only"
        )
    messages = check_messages(value.get("messages"), "input.messages", roles=USER_ROLES)
    if not any(_role(m) in USER_ROLES and _has_text(_content(m)) for m in messages):
        raise Unprocessable(
            "input: send at least one new user message (role `user` with some text); an "
            "empty input would repeat the last turn"
        )


def check_state_values(values: Any, where: str) -> None:
    """A state write may only add messages.

    Raises:
        Unprocessable: another channel, or malformed messages.
    """
    if values is None:
        return
    if not isinstance(values, dict):
        raise Unprocessable(f"{where}: must be an object; only `messages` can be written")
    protected = sorted(set(values) - WRITABLE_CHANNELS)
    if protected:
        raise Unprocessable(
            f"{where}: {', '.join(protected)} cannot be written; verdicts, decisions, planned "
            "actions and responses belong to the graph (only `messages` is writable)"
        )
    if "messages" in values:
        check_messages(values["messages"], f"{where}.messages")


def check_node(node: Any, where: str) -> None:
    """A client may not write as, or jump to, the nodes that judge or execute tool calls.

    Raises:
        Unprocessable: `node` is one of them.
    """
    names: list[Any] = [node] if isinstance(node, str) else []
    if isinstance(node, dict):
        names = [node.get("node")]
    elif isinstance(node, list):
        names = [n.get("node") if isinstance(n, dict) else n for n in node]
    blocked = sorted({n for n in names if isinstance(n, str)} & PROTECTED_NODES)
    if blocked:
        raise Unprocessable(
            f"{where}: {', '.join(blocked)} cannot be named by a client; tool calls are "
            "judged, held for approval and executed by the graph only"
        )


def check_command(update: Any, goto: Any) -> None:
    """`command.update` writes messages only; `command.goto` avoids the protected nodes."""
    check_state_values(update, "command.update")
    check_node(goto, "command.goto")


def request_digest(body: RunCreate) -> str:
    """A digest of what a request asks (input, command, config): tells re-sends apart."""
    payload = {
        "assistant_id": body.assistant_id, "input": body.input,
        "command": body.command.model_dump(exclude_none=True) if body.command else None,
        "config": body.config, "context": body.context,
    }
    raw = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                       default=str)
    return hashlib.sha256(raw).hexdigest()


def message_key(thread_id: uuid.UUID, value: Any) -> str | None:
    """A key derived from the id of the input's last user message, when the client set one."""
    if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
        return None
    for message in reversed(value["messages"]):
        if isinstance(message, dict) and _role(message) in USER_ROLES:
            mid = message.get("id")
            return f"msg:{thread_id}:{mid}" if isinstance(mid, str) and mid else None
    return None


__all__ = [
    "PROTECTED_NODES",
    "WRITABLE_CHANNELS",
    "check_command",
    "check_input",
    "check_messages",
    "check_node",
    "check_state_values",
    "check_text",
    "message_key",
    "request_digest",
]
