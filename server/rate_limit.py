"""Request rate limits per API key: Litestar's rate-limit middleware, 429 with Retry-After.

Counters live in each replica's memory (soft state: losing them on restart is harmless), so
the effective limit across N replicas behind a balancer is up to N times the setting.
"""

from __future__ import annotations

import hashlib
from typing import Any

from litestar import Request
from litestar.middleware.rate_limit import RateLimitConfig

from core.settings import Settings

UNLIMITED_PATHS = ["/healthz", "/readyz", "/ok", "/metrics"]


def caller_identity(request: Request[Any, Any, Any]) -> str:
    """Key the limit by the caller's credential (hashed), else by the client address."""
    credential = request.headers.get("x-api-key") or request.headers.get("authorization")
    if credential:
        return "key:" + hashlib.sha256(credential.encode()).hexdigest()[:24]
    return "addr:" + (request.client.host if request.client else "unknown")


def rate_limit_config(settings: Settings) -> RateLimitConfig | None:
    """The middleware config, or None when `STEWARD_RATE_LIMIT_PER_MINUTE` is 0."""
    if settings.rate_limit_per_minute <= 0:
        return None
    return RateLimitConfig(
        rate_limit=("minute", settings.rate_limit_per_minute),
        identifier_for_request=caller_identity,
        exclude=UNLIMITED_PATHS,
    )
