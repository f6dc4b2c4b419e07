"""The app-wide dependency providers the route handlers use.

Dependencies registered app-wide by `server.app.create_app` (any handler may ask for them):
`principal` (401 without a valid key), `runtime`, `run_service`, `settings`, `threads_repo`,
`key_store`.
"""

from __future__ import annotations

from typing import TypeAlias

from litestar.datastructures import State
from litestar.di import NamedDependency

from core.errors import Unavailable
from core.settings import Settings
from graph.runtime import Runtime
from server.keys import KeyStore
from server.runs.service import RunService
from server.threads_repo import ThreadsRepo

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


def provide_run_service(state: State) -> RunService:
    """Dependency `run_service`: the runs engine, woken by this process's run worker."""
    service: RunService | None = state.get("run_service")
    if service is None:
        raise Unavailable("service is starting")
    return service


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


__all__ = [
    "RuntimeDep",
    "ThreadsRepoDep",
    "provide_key_store",
    "provide_run_service",
    "provide_runtime",
    "provide_settings",
    "provide_threads_repo",
]
