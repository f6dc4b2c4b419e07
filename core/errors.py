"""Steward's one error tree. The HTTP mapping of every class lives in `server/errors.py`.

StewardError                    base of every error Steward raises on purpose
├── ConfigError                 wiring or configuration mistake (production without a provider)
├── ProviderError               the LLM provider failed; `retryable` drives the node retry policy
├── InvariantViolated           the graph reached a state that the code rules out
└── Refused                     a request refused on purpose, with a `detail` for the caller
    ├── Unauthorized            missing, unknown or revoked API key                  (401)
    ├── Forbidden               the principal's role may not do this                 (403)
    ├── NotFound                missing, or not visible to the principal             (404)
    ├── Conflict                state conflict (busy thread, second decision)        (409)
    ├── Unprocessable           well-formed but invalid request                      (422)
    ├── PayloadTooLarge         request body above the limit                         (413)
    ├── TooManyRequests         rate limited; carries `retry_after`                  (429)
    └── Unavailable             the database (or another dependency) is down         (503)

Each package's own failures subclass `StewardError` where they are raised (they keep the
builtin base callers may already catch): `core.knowledge.index.KnowledgeIndexError` (index
missing, mismatched or corrupt), `core.knowledge.ingest.IngestError`,
`core.domain.types.RefundRefused`, `nodes.validate.AnswerInvalid`, `server.keys.NoApiKeys`,
`server.runs.models.RunValidationError`, `server.runs.executor.ResumeConflict` and
`evals.cases.DatasetError`. The mock provider (`mock_llm`, a testing tool) keeps its own.
"""

from __future__ import annotations


class StewardError(Exception):
    """Base class of Steward's own errors."""


class ConfigError(StewardError):
    """The service is configured in a way it cannot run with."""


class ProviderError(StewardError):
    """The LLM provider failed to answer; the message says how, never with secrets."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        """Seconds the provider asked us to wait (its `Retry-After`), if it said."""


class InvariantViolated(StewardError):
    """The graph reached a state that its own rules make impossible."""


class Refused(StewardError):
    """A request Steward refuses on purpose; `detail` is safe to show the caller."""

    default_detail: str = "refused"

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or self.default_detail
        super().__init__(self.detail)


class Unauthorized(Refused):
    """No valid API key was presented."""

    default_detail = "missing or invalid API key"


class Forbidden(Refused):
    """The principal is authenticated but its role does not allow this."""

    default_detail = "forbidden"


class NotFound(Refused):
    """The resource does not exist or is not visible to the principal."""

    default_detail = "not found"


class Conflict(Refused):
    """The request conflicts with the resource's current state."""

    default_detail = "conflict"


class Unprocessable(Refused):
    """The request is well-formed JSON but not acceptable."""

    default_detail = "unprocessable request"


class PayloadTooLarge(Refused):
    """The request body exceeds the limit."""

    default_detail = "request body too large"


class TooManyRequests(Refused):
    """Rate limited; retry after `retry_after` seconds."""

    default_detail = "too many requests"

    def __init__(self, detail: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class Unavailable(Refused):
    """A dependency (usually the database) is unreachable."""

    default_detail = "service unavailable: database unreachable"


def is_retryable(exc: BaseException) -> bool:
    """Tell the node retry policy which failures are worth another attempt."""
    return isinstance(exc, ProviderError) and exc.retryable
