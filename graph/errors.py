"""Errors raised by the workflow.

StewardError
├── ConfigError        wiring or configuration mistake (e.g. production without a provider)
├── ProviderError      the LLM provider failed; `retryable` drives the node retry policy
└── InvariantViolated  the graph reached a state that the code rules out
"""

from __future__ import annotations


class StewardError(Exception):
    """Base class of the workflow's own errors."""


class ConfigError(StewardError):
    """The service is configured in a way it cannot run with."""


class ProviderError(StewardError):
    """The LLM provider failed to answer; the message says how, never with secrets."""

    def __init__(
        self, message: str, *, retryable: bool, status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        """Seconds the provider asked us to wait (its `Retry-After`), if it said."""


class InvariantViolated(StewardError):
    """The graph reached a state that its own rules make impossible."""


def is_retryable(exc: BaseException) -> bool:
    """Tell the node retry policy which failures are worth another attempt."""
    return isinstance(exc, ProviderError) and exc.retryable
