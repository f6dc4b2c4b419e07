"""Route handlers of the foundation, and the app-wide dependency providers they use.

Dependencies registered app-wide by `server.app.create_app` (any handler may ask for them):
`principal` (401 without a valid key), `runtime`, `settings`, `threads_repo`, `key_store`.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from litestar.datastructures import State
from litestar.di import NamedDependency

from server.errors import Unavailable
from server.keys import KeyStore
from server.threads_repo import ThreadsRepo
from steward.runtime import Runtime
from steward.settings import Settings

RuntimeDep: TypeAlias = NamedDependency[Runtime]
"""Handler annotation for the app-wide `runtime` dependency."""
ThreadsRepoDep: TypeAlias = NamedDependency[ThreadsRepo]
"""Handler annotation for the app-wide `threads_repo` dependency."""


def provide_runtime(state: State) -> Runtime:
    """Dependency `runtime`: the process's graph, pool and checkpointer."""
    runtime: Runtime | None = state.get("runtime")
    if runtime is None:
        raise Unavailable("service is starting")
    return runtime


def provide_settings(state: State) -> Settings:
    """Dependency `settings`."""
    settings: Settings = state["settings"]
    return settings


def provide_threads_repo(state: State) -> ThreadsRepo:
    """Dependency `threads_repo`."""
    repo: ThreadsRepo | None = state.get("threads_repo")
    if repo is None:
        raise Unavailable("service is starting")
    return repo


def provide_key_store(state: State) -> KeyStore:
    """Dependency `key_store`."""
    store: KeyStore | None = state.get("key_store")
    if store is None:
        raise Unavailable("service is starting")
    return store


def foundation_routes() -> list[Any]:
    """Every foundation route handler/controller (runs routes are added by the app)."""
    from server.routes.approvals import ApprovalsController
    from server.routes.assistants import AssistantsController
    from server.routes.meta import META_ROUTES
    from server.routes.threads import ThreadsController
    from server.routes.unsupported import UNSUPPORTED_ROUTES

    return [*META_ROUTES, AssistantsController, ThreadsController, ApprovalsController,
            *UNSUPPORTED_ROUTES]


__all__ = [
    "RuntimeDep",
    "ThreadsRepoDep",
    "foundation_routes",
    "provide_key_store",
    "provide_runtime",
    "provide_settings",
    "provide_threads_repo",
]
