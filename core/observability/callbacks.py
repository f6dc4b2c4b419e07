"""LangChain callback plumbing: add handlers to whatever a config's `callbacks` holds."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import BaseCallbackHandler, BaseCallbackManager


def handlers_of(callbacks: Any) -> list[BaseCallbackHandler]:
    """The handlers of a config's `callbacks` (None, a list or a callback manager)."""
    if isinstance(callbacks, BaseCallbackManager):
        return list(callbacks.handlers)
    return list(callbacks or [])


def add_handlers(callbacks: Any, handlers: list[BaseCallbackHandler]) -> Any:
    """Return `callbacks` plus `handlers`, without modifying `callbacks`.

    Args:
        callbacks: a config's `callbacks`: None, a list of handlers or a callback manager
            (copied, the handlers added as inheritable).
        handlers: the handlers to add.

    Returns:
        A new list, or a copy of the manager.
    """
    if callbacks is None:
        return list(handlers)
    if isinstance(callbacks, BaseCallbackManager):
        manager = callbacks.copy()
        for handler in handlers:
            manager.add_handler(handler, inherit=True)
        return manager
    return [*callbacks, *handlers]


__all__ = ["add_handlers", "handlers_of"]
