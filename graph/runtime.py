"""The assembled workflow a process runs: compiled graph, its dependencies, pool and saver.

`steward.runtime.open_runtime` (the composition root) builds one; the service and the evals
take it as given. (Not LangGraph's per-invocation `langgraph.runtime.Runtime`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph.state import CompiledStateGraph
from psycopg_pool import AsyncConnectionPool

from graph.deps import Deps


@dataclass
class Runtime:
    """Everything a process needs to run turns of the workflow."""

    graph: CompiledStateGraph[Any, Any, Any, Any]
    deps: Deps
    pool: AsyncConnectionPool[Any]
    checkpointer: AsyncPostgresSaver
    database_url: str
