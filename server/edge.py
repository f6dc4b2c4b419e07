r"""The edge check every request passes before a handler sees its body or query string.

One generic walk instead of per-field patches, for what no field schema can say:

- **NUL characters** (`\u0000`) anywhere in a JSON body (values and keys), a query parameter
  or the path: Postgres `text`/`jsonb` cannot hold them (psycopg raised
  `UntranslatableCharacter`, a 500). 422 naming the field path, e.g. `metadata.a[2]`.
- **Nesting depth** of a JSON body: at most `MAX_JSON_DEPTH` (64) levels. msgspec (Litestar's
  decoder) raised `RecursionError` on ~1000 levels; the body is parsed here with orjson (which
  stops at 1024 levels by itself) and walked without recursion. 422.
- **Integers** in a JSON body must fit in 64 bits (Postgres `bigint`, msgpack checkpoints);
  per-field ranges (`limit`, `offset`, ...) are the schemas' (`server.schemas`). 422.
- **Malformed JSON** (including lone surrogates, NaN, numbers that overflow a double): 422.
- **Forms**: under the paths given as `form_paths` (the inbox, `/inbox`), a URL-encoded body is
  a form, not JSON: NUL characters in its fields are refused (422), nothing else.
- Bodies above `MAX_BODY_BYTES` while being read: 413.

The body is checked when the application reads it (the check wraps `receive`), so a route that
authenticates first still answers 401 before it looks at the body; query strings and paths
are checked before the handler runs. A failed check raises `Unprocessable`, which the app's
exception handlers turn into `{"detail": ...}`.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote

import orjson
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, ReceiveMessage, Scope, Send

from core.errors import PayloadTooLarge, Unprocessable
from server.errors import MAX_BODY_BYTES, TOO_LARGE

MAX_JSON_DEPTH = 64
"""Deepest nesting of objects/arrays accepted in a request body."""
MAX_OFFSET = 1_000_000
"""Largest `offset` any paginated route accepts."""
MAX_PAGE = 1000
"""Largest `limit` (page size) of the LangGraph API routes."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
NUL = "\x00"
FORM_CONTENT_TYPE = b"application/x-www-form-urlencoded"


def _path_join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _show(path: str) -> str:
    """The field path for a detail: `body` for the root, long paths shortened."""
    if not path:
        return "body"
    return path if len(path) <= 120 else f"{path[:60]}...{path[-40:]}"


def check_json_value(value: Any, *, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Walk a decoded JSON value once (no recursion): depth, NUL characters, 64-bit integers.

    Raises:
        Unprocessable: naming the path of the first offending field (`body` for the root).
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                raise Unprocessable(f"{_show(path)}: NUL characters (\\u0000) are not accepted")
        elif isinstance(item, bool) or item is None or isinstance(item, float):
            continue
        elif isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise Unprocessable(f"{_show(path)}: integer out of range (64-bit signed)")
        elif isinstance(item, (dict, list)):
            if depth >= max_depth:
                raise Unprocessable(f"{_show(path)}: JSON nested deeper than {max_depth} levels")
            if isinstance(item, dict):
                for key, child in item.items():
                    if NUL in key:
                        raise Unprocessable(
                            f"{_show(_path_join(path, repr(key)[1:-1]))}: NUL characters "
                            "(\\u0000) are not accepted in keys"
                        )
                    stack.append((child, _path_join(path, key), depth + 1))
            else:
                stack.extend(
                    (child, _path_join(path, i), depth + 1) for i, child in enumerate(item)
                )


def has_nul(value: Any, depth: int = 0) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if depth > 20:
        return False
    if isinstance(value, dict):
        return any(has_nul(k, depth + 1) or has_nul(v, depth + 1) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(has_nul(v, depth + 1) for v in value)
    return False


def check_text(value: Any, where: str) -> None:
    """Refuse NUL characters anywhere in a client value (Postgres text cannot hold them).

    Raises:
        Unprocessable: `value` holds a NUL character.
    """
    if has_nul(value):
        raise Unprocessable(f"{where}: NUL characters are not accepted")


def check_body(raw: bytes) -> None:
    """Parse a request body as JSON and check it (`check_json_value`); empty is left alone.

    Raises:
        Unprocessable: malformed JSON, too deep, NUL characters, integers out of range.
    """
    if not raw.strip():
        return
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc) or "recursion" in str(exc).lower():
            raise Unprocessable(f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
        raise Unprocessable(f"malformed JSON body: {exc}") from None
    check_json_value(value)


def _check_pairs(text: str, what: str) -> None:
    if "%00" not in text and NUL not in text:
        return
    for key, value in parse_qsl(text, keep_blank_values=True):
        if NUL in key or NUL in value:
            name = key.replace(NUL, "\\u0000")
            raise Unprocessable(f"{what} {name!r}: NUL characters (\\u0000) are not accepted")


def check_query(query_string: bytes) -> None:
    """Refuse NUL characters in query parameter names and values.

    Raises:
        Unprocessable: naming the parameter.
    """
    if query_string:
        _check_pairs(query_string.decode("latin-1"), "query parameter")


def check_form(raw: bytes) -> None:
    """Refuse NUL characters in the field names and values of a URL-encoded form body.

    Raises:
        Unprocessable: naming the field.
    """
    _check_pairs(raw.decode("latin-1"), "form field")


def check_path(path: str) -> None:
    """Refuse NUL characters in the (decoded) path.

    Raises:
        Unprocessable: the path holds one.
    """
    if NUL in path or NUL in unquote(path):
        raise Unprocessable("path: NUL characters (\\u0000) are not accepted")


class EdgeValidationMiddleware(ASGIMiddleware):
    """Check paths and query strings up front and JSON bodies as the app reads them.

    Under `form_paths` (the inbox's pages), a URL-encoded body is checked as a form
    (`check_form`) instead of as JSON; any other body there is still checked as JSON.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(
        self, *, max_body_bytes: int = MAX_BODY_BYTES, form_paths: tuple[str, ...] = ()
    ) -> None:
        """Create the middleware; bodies above `max_body_bytes` answer 413 while read."""
        self.max_body_bytes = max_body_bytes
        self.form_paths = form_paths

    def _is_form(self, scope: Scope) -> bool:
        path = str(scope.get("path", ""))
        if not any(path == p or path.startswith(f"{p}/") for p in self.form_paths):
            return False
        for name, value in scope.get("headers", []):
            if name == b"content-type":
                return value.split(b";")[0].strip().lower() == FORM_CONTENT_TYPE
        return False

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        """Run the checks around the next application."""
        check_path(str(scope.get("path", "")))
        check_query(bytes(scope.get("query_string", b"")))
        chunks: list[bytes] = []
        size = 0
        check = check_form if self.form_paths and self._is_form(scope) else check_body

        async def checked_receive() -> ReceiveMessage:
            nonlocal size
            message = await receive()
            if message["type"] != "http.request":
                return message
            body = bytes(message.get("body", b""))
            size += len(body)
            if size > self.max_body_bytes:
                raise PayloadTooLarge(TOO_LARGE)
            chunks.append(body)
            if not message.get("more_body", False):
                check(b"".join(chunks))
                chunks.clear()
            return message

        await next_app(scope, checked_receive, send)


__all__ = [
    "MAX_JSON_DEPTH",
    "MAX_OFFSET",
    "MAX_PAGE",
    "EdgeValidationMiddleware",
    "check_body",
    "check_form",
    "check_json_value",
    "check_path",
    "check_query",
]
