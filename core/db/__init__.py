"""Database layer: choosing the database, the connection pool, and migrations."""

from core.db.embedded import redact_url, resolve_database_url, stop_embedded
from core.db.migrate import migrate, run_migrations
from core.db.pool import DbPool, create_pool, open_pool

__all__ = [
    "DbPool",
    "create_pool",
    "migrate",
    "open_pool",
    "redact_url",
    "resolve_database_url",
    "run_migrations",
    "stop_embedded",
]
