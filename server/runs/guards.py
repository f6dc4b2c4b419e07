"""What a client may ask of a run or a state write, checked before anything is stored.

- An input is `{"messages": [...]}` with at least one new user message: an empty input, an
  unknown key or a list would re-run the last turn (and its side effects) as a new request.
- State writes (`POST /threads/{id}/state`, `command.update`) may change the conversation,
  nothing else: the channels that carry verdicts, decisions, planned actions and the response
  are the graph's own. `as_node` / `command.goto` may not name the nodes that judge, hold or
  execute tool calls.
- Messages a client sends (run input, state writes, `command.update`): at most
  `STEWARD_MAX_INPUT_MESSAGES` per request, each at most `STEWARD_MAX_INPUT_CHARS` characters
  of text; content is a string or a list of content blocks (run input: text blocks only, the
  only ones `input_filter` accepts). Roles: run input `user`/`human` only; state writes also
  `assistant`/`ai`, `system` and `tool` (what `convert_to_messages` builds). Anything else is
  a 422 naming the message, so a run never starts with input the graph would refuse.
- A request's key: the client's `Idempotency-Key`, else one derived from the id of its last
  user message; its digest tells a re-send from another request with the same key.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from langchain_core.messages import convert_to_messages

from core.errors import Unprocessable
from server.edge import has_nul
from server.runs.models import RunCreate

WRITABLE_CHANNELS = frozenset({"messages"})
"""State channels a client may write (everything else is the graph's)."""
PROTECTED_NODES = frozenset({"guard_tools", "approval", "run_tools"})
"""Nodes a client may not write as or jump to: they judge, hold and execute tool calls."""
USER_ROLES = frozenset({"user", "human"})
MESSAGE_ROLES = frozenset({"user", "human", "assistant", "ai", "system", "tool"})


@dataclass(frozen=True)
class MessageLimits:
    """Caps on the messages of one request (`STEWARD_MAX_INPUT_MESSAGES`, `..._CHARS`)."""

    max_messages: int = 50
    max_chars: int = 8000
    text_only: bool = False
    """Content blocks must be text (run input: `input_filter` refuses other blocks)."""

    @classmethod
    def of(cls, settings: Any, *, text_only: bool = False) -> MessageLimits:
        """The limits from the service settings."""
        return cls(
            max_messages=int(settings.max_input_messages),
            max_chars=int(settings.max_input_chars),
            text_only=text_only,
        )


DEFAULT_LIMITS = MessageLimits()


def _text_length(content: str | list[Any]) -> int:
    if isinstance(content, str):
        return len(content)
    total = 0
    for part in content:
        if isinstance(part, str):
            total += len(part)
        elif isinstance(part, dict) and isinstance(part.get("text"), str):
            total += len(part["text"])
    return total


def _check_parts(content: list[Any], where: str, *, text_only: bool) -> None:
    for j, part in enumerate(content):
        if isinstance(part, str):
            continue
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise Unprocessable(
                f"{where}.content[{j}]: a content block is a string or an object with a `type`"
            )
        if part["type"] == "text" and not isinstance(part.get("text"), str):
            raise Unprocessable(f"{where}.content[{j}].text: must be a string")
        if text_only and part["type"] != "text":
            raise Unprocessable(
                f"{where}.content[{j}]: only text content is accepted here "
                f"(got a {part['type']!r} block)"
            )


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


def check_messages(
    messages: Any,
    where: str,
    *,
    roles: frozenset[str] = MESSAGE_ROLES,
    limits: MessageLimits = DEFAULT_LIMITS,
) -> list[Any]:
    """Validate messages as LangChain will build them, so a bad one never reaches a checkpoint.

    A message that LangChain cannot build (an `id` that is not a string, content parts that
    are not text or blocks, a tool message without `tool_call_id`, ...) would fail the run
    after its input was stored, and every later read of the thread with it.

    Raises:
        Unprocessable: not a list, more than `limits.max_messages`, a role outside `roles`,
            content that is not a string or content blocks, text above `limits.max_chars`,
            or a message LangChain refuses.
    """
    if not isinstance(messages, list):
        raise Unprocessable(f"{where}: must be a list of messages")
    if len(messages) > limits.max_messages:
        raise Unprocessable(
            f"{where}: {len(messages)} messages; at most {limits.max_messages} per request "
            "(STEWARD_MAX_INPUT_MESSAGES)"
        )
    for i, message in enumerate(messages):
        if not isinstance(message, (dict, list, tuple)):
            raise Unprocessable(f"{where}[{i}]: a message is an object with `role` and `content`")
        role = _role(message)
        if role not in roles:
            raise Unprocessable(f"{where}[{i}].role: must be one of {', '.join(sorted(roles))}")
        content = _content(message)
        if not isinstance(content, (str, list)):
            raise Unprocessable(f"{where}[{i}].content: must be a string or a list of parts")
        if isinstance(content, list):
            _check_parts(content, f"{where}[{i}]", text_only=limits.text_only)
        length = _text_length(content)
        if length > limits.max_chars:
            raise Unprocessable(
                f"{where}[{i}].content: {length} characters; at most {limits.max_chars} per "
                "message (STEWARD_MAX_INPUT_CHARS)"
            )
        if has_nul(message):
            raise Unprocessable(f"{where}[{i}]: NUL characters are not accepted")
        try:
            convert_to_messages([message])
        except Exception as exc:  # noqa: BLE001 - LangChain raises several types here
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise Unprocessable(f"{where}[{i}]: not a valid message ({detail})") from None
    return messages


def check_input(value: Any, limits: MessageLimits = DEFAULT_LIMITS) -> None:
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
    limits = MessageLimits(
        max_messages=limits.max_messages, max_chars=limits.max_chars, text_only=True
    )
    messages = check_messages(
        value.get("messages"), "input.messages", roles=USER_ROLES, limits=limits
    )
    if not messages or not _has_text(_content(messages[-1])):
        raise Unprocessable(
            "input: send at least one new user message (role `user` with some text); an "
            "empty input would repeat the last turn"
        )


def check_state_values(values: Any, where: str, limits: MessageLimits = DEFAULT_LIMITS) -> None:
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
        check_messages(values["messages"], f"{where}.messages", limits=limits)


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


def check_command(update: Any, goto: Any, limits: MessageLimits = DEFAULT_LIMITS) -> None:
    """`command.update` writes messages only; `command.goto` avoids the protected nodes."""
    check_state_values(update, "command.update", limits)
    check_node(goto, "command.goto")


def request_digest(body: RunCreate) -> str:
    """A digest of what a request asks (input, command, config): tells re-sends apart."""
    payload = {
        "assistant_id": body.assistant_id,
        "input": body.input,
        "command": body.command.model_dump(exclude_none=True) if body.command else None,
        "config": body.config,
        "context": body.context,
    }
    raw = orjson.dumps(payload, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=str)
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
    "DEFAULT_LIMITS",
    "MESSAGE_ROLES",
    "PROTECTED_NODES",
    "USER_ROLES",
    "WRITABLE_CHANNELS",
    "MessageLimits",
    "check_command",
    "check_input",
    "check_messages",
    "check_node",
    "check_state_values",
    "message_key",
    "request_digest",
]
