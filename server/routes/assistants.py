"""Assistants: the read-only system assistant and the tenant's versioned assistants.

The system assistant (`agent`; id `uuid5(6ba7b821-9dad-11d1-80b4-00c04fd430c8, "agent")`) is
visible to every key and cannot be changed (403). Each tenant may add assistants of the
graph `agent`: configurations a run names by `assistant_id`, whose `config` and `context`
are merged under the run's own (`server.runs.admission.with_assistant`). Every update writes
a new version; `/latest` makes a stored version the one runs use.

Who may do what: every key of a tenant reads its assistants (and the system one) and runs
with them; only role `admin` creates, updates, deletes them or sets their latest version,
since an assistant is shared by the whole tenant. Another tenant's assistant is a 404 for
every role. A config may not name identity (`configurable.user_id`, `tenant_id`, `role`,
`requester_id`, `thread_id`, nor the same keys in `context`): 422.
"""

import logging
from typing import Annotated, Any, TypeAlias, cast, get_type_hints, is_typeddict

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter
from pydantic import TypeAdapter

from core.errors import Conflict, Forbidden, NotFound, Unprocessable
from core.identity import Principal
from graph.runtime import Runtime
from server.assistants_repo import (
    ASSISTANT_ID,
    GRAPH_ID,
    SYSTEM_ASSISTANT,
    AssistantRow,
    AssistantsRepo,
    AssistantVersionRow,
    is_system,
)
from server.auth import PrincipalDep
from server.openapi import api_errors
from server.routes.deps import RuntimeDep, ThreadsRepoDep
from server.runs.admission import check_assistant_config
from server.schemas import (
    AssistantCount,
    AssistantCreate,
    AssistantLatest,
    AssistantOut,
    AssistantPatch,
    AssistantSearch,
    AssistantVersionsSearch,
    GraphSchemaOut,
)
from server.threads_repo import ThreadRow, ThreadsRepo

logger = logging.getLogger(__name__)

DEFAULT_NAME = "Untitled"
"""The name of an assistant created without one, as langgraph-api names it."""

_READ_ONLY = (
    f"the system assistant {ASSISTANT_ID} ({GRAPH_ID!r}) is read-only; create an assistant of "
    f"graph {GRAPH_ID!r} (role admin) to change its configuration"
)


def _check_graph(graph_id: str | None) -> None:
    if graph_id is not None and graph_id != GRAPH_ID:
        raise NotFound(f"graph {graph_id!r} not found (this server serves {GRAPH_ID!r})")


def _check_writer(principal: Principal) -> None:
    if not principal.is_admin:
        raise Forbidden(
            f"role {principal.role!r} may not change assistants; they are shared by the "
            "tenant and need role admin"
        )


def _check_metadata(metadata: dict[str, Any] | None) -> None:
    if metadata and "created_by" in metadata and "system" in str(metadata["created_by"]).lower():
        raise Unprocessable(
            "metadata.created_by: 'system' marks the system assistant (Studio looks for it)"
        )


async def _delete_threads_of(
    principal: Principal, threads_repo: ThreadsRepo, assistant_id: str
) -> None:
    """Delete the caller's visible threads that ran `assistant_id`; 409 first if one is busy.

    Every thread is listed before any goes, so a busy one refuses the whole delete; a thread
    that turns busy in between still answers 409, naming how many were deleted already.
    """
    rows: list[ThreadRow] = []
    while True:
        page = await threads_repo.search(
            principal, metadata={"assistant_id": assistant_id}, limit=100, offset=len(rows)
        )
        rows += page
        if len(page) < 100:
            break
    busy = [r for r in rows if r["status"] == "busy"]
    if busy:
        raise Conflict(
            f"{len(busy)} thread(s) of assistant {assistant_id} are busy: cancel their runs "
            "first; nothing was deleted"
        )
    for done, row in enumerate(rows):
        try:
            await threads_repo.delete(principal, row["thread_id"])
        except NotFound:
            continue  # deleted meanwhile
        except Conflict:
            raise Conflict(
                f"thread {row['thread_id']} of assistant {assistant_id} became busy: {done} "
                "of its threads were deleted, the assistant was not; cancel its runs and retry"
            ) from None


async def _writable(repo: AssistantsRepo, principal: Principal, assistant_id: str) -> None:
    """404 for another tenant's or a missing assistant, 403 for the system one or a non-admin."""
    if is_system(assistant_id):
        raise Forbidden(_READ_ONLY)
    await repo.get(principal, assistant_id)
    _check_writer(principal)


def _select(a: AssistantRow, select: list[str] | None) -> dict[str, Any]:
    data = dict(a)
    return {k: data[k] for k in select if k in data} if select else data


def _hoisted_schema(typ: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    schema = TypeAdapter(typ).json_schema()
    defs = schema.pop("$defs", {})
    return schema, defs


def json_schema_of(typ: Any) -> dict[str, Any] | None:
    """JSON schema of a state/input type, field by field when pydantic refuses the whole type.

    On Python < 3.12 pydantic refuses `typing.TypedDict`; then each field gets its own schema
    (or `{}` = any) and nested `$defs` are hoisted to the root so `$ref`s stay valid.
    """
    if typ is None:
        return None
    try:
        return TypeAdapter(typ).json_schema()
    except Exception:  # noqa: BLE001  # fall back below
        if not is_typeddict(typ):
            return {"title": getattr(typ, "__name__", "Schema"), "type": "object"}
    properties: dict[str, Any] = {}
    defs: dict[str, Any] = {}
    for key, hint in get_type_hints(typ).items():
        try:
            properties[key], field_defs = _hoisted_schema(hint)
            defs.update(field_defs)
        except Exception:  # noqa: BLE001  # unknown field type: accept anything
            properties[key] = {}
    out: dict[str, Any] = {
        "title": typ.__name__,
        "type": "object",
        "properties": properties,
        "required": sorted(getattr(typ, "__required_keys__", ())),
    }
    if defs:
        out["$defs"] = defs
    return out


_SCHEMA_CACHE: dict[int, GraphSchemaOut] = {}


def _schemas_for(runtime: Runtime) -> GraphSchemaOut:
    builder = runtime.graph.builder
    return {
        "graph_id": GRAPH_ID,
        "input_schema": json_schema_of(builder.input_schema),
        "output_schema": json_schema_of(builder.output_schema),
        "state_schema": json_schema_of(builder.state_schema),
        "config_schema": {"title": f"{GRAPH_ID}_config", "type": "object", "properties": {}},
        # The run context is identity the service sets from the API key, never the client's.
        "context_schema": None,
    }


def graph_schemas(runtime: Runtime) -> GraphSchemaOut:
    """The graph's schemas, computed once per graph object."""
    key = id(runtime.graph)
    if key not in _SCHEMA_CACHE:
        _SCHEMA_CACHE[key] = _schemas_for(runtime)
    return _SCHEMA_CACHE[key]


AssistantId: TypeAlias = Annotated[
    str, PathParameter(description="The assistant's id, or the graph name `agent`.")
]
Recurse: TypeAlias = Annotated[bool, QueryParameter(description="Include nested subgraphs.")]


def _repo(runtime: Runtime) -> AssistantsRepo:
    return AssistantsRepo(runtime.pool)


class AssistantsController(Controller):
    """Assistants: create, search, count, get, update, delete, versions, graph, schemas."""

    path = "/assistants"
    tags = ["assistants"]

    @post(
        "/",
        operation_id="CreateAssistant",
        status_code=200,
        responses=api_errors(403, 404, 409, body=True),
    )
    async def create_assistant(
        self, principal: PrincipalDep, runtime: RuntimeDep, data: JSONBody[AssistantCreate]
    ) -> AssistantOut:
        """Create version 1 of an assistant of the caller's tenant (role admin).

        404 for a graph other than `agent`, 409 for a taken id (unless `if_exists` is
        `do_nothing`: the existing one is returned), 422 for a config naming identity.
        """
        _check_graph(data.graph_id)
        _check_writer(principal)
        _check_metadata(data.metadata)
        config, context = check_assistant_config(
            data.config, data.context, int(runtime.deps.settings.recursion_limit)
        )
        return await _repo(runtime).create(
            principal,
            assistant_id=data.assistant_id,
            graph_id=data.graph_id,
            config=config,
            context=context,
            metadata=data.metadata or {},
            name=data.name or DEFAULT_NAME,
            description=data.description,
            if_exists=data.if_exists,
        )

    @post(
        "/search",
        operation_id="SearchAssistants",
        status_code=200,
        responses=api_errors(body=True),
    )
    async def search(
        self, principal: PrincipalDep, runtime: RuntimeDep, data: JSONBody[AssistantSearch]
    ) -> Response[list[dict[str, Any]]]:
        """List the system assistant and the tenant's, matching metadata, graph id and name.

        Newest first by default; `X-Pagination-Next` carries the next offset when more follow.
        """
        found, more = await _repo(runtime).search(
            principal,
            metadata=data.metadata,
            graph_id=data.graph_id,
            name=data.name,
            limit=data.limit,
            offset=data.offset,
            sort_by=data.sort_by,
            sort_order=data.sort_order,
        )
        headers = {"X-Pagination-Next": str(data.offset + data.limit)} if more else {}
        return Response([_select(a, data.select) for a in found], headers=headers)

    @post(
        "/count", operation_id="CountAssistants", status_code=200, responses=api_errors(body=True)
    )
    async def count(
        self, principal: PrincipalDep, runtime: RuntimeDep, data: JSONBody[AssistantCount]
    ) -> int:
        """Count the visible assistants matching metadata, graph id and name."""
        return await _repo(runtime).count(
            principal, metadata=data.metadata, graph_id=data.graph_id, name=data.name
        )

    @get("/{assistant_id:str}", operation_id="GetAssistant", responses=api_errors(404))
    async def get_assistant(
        self, principal: PrincipalDep, runtime: RuntimeDep, assistant_id: AssistantId
    ) -> AssistantOut:
        """Return the assistant (its latest version) by id, or the system one by `agent`."""
        return await _repo(runtime).get(principal, assistant_id)

    @patch(
        "/{assistant_id:str}",
        operation_id="PatchAssistant",
        responses=api_errors(403, 404, body=True),
    )
    async def patch_assistant(
        self,
        principal: PrincipalDep,
        runtime: RuntimeDep,
        assistant_id: AssistantId,
        data: JSONBody[AssistantPatch],
    ) -> AssistantOut:
        """Write a new version from the latest one and make it the latest (role admin).

        Omitted fields are kept, `config` and `context` replace, `metadata` is merged.
        403 for the system assistant, 404 for another tenant's.
        """
        repo = _repo(runtime)
        await _writable(repo, principal, assistant_id)
        _check_graph(data.graph_id)
        _check_metadata(data.metadata)
        config, context = check_assistant_config(
            data.config, data.context, int(runtime.deps.settings.recursion_limit)
        )
        return await repo.update(
            principal,
            assistant_id,
            graph_id=data.graph_id,
            config=config if data.config is not None else None,
            context=context if data.context is not None else None,
            metadata=data.metadata,
            name=data.name,
            description=data.description,
        )

    @delete(
        "/{assistant_id:str}",
        operation_id="DeleteAssistant",
        status_code=204,
        responses=api_errors(403, 404, 409),
    )
    async def delete_assistant(
        self,
        principal: PrincipalDep,
        runtime: RuntimeDep,
        threads_repo: ThreadsRepoDep,
        assistant_id: AssistantId,
        delete_threads: Annotated[
            bool,
            QueryParameter(description="Also delete the threads whose runs used it."),
        ] = False,
    ) -> None:
        """Delete the assistant and its versions (role admin; 403 for the system one).

        With `delete_threads=true` the tenant's threads whose metadata names the assistant
        go first; a busy one answers 409 and the assistant stays.
        """
        repo = _repo(runtime)
        await _writable(repo, principal, assistant_id)
        if delete_threads:
            canonical = (await repo.get(principal, assistant_id))["assistant_id"]
            await _delete_threads_of(principal, threads_repo, canonical)
        await repo.delete(principal, assistant_id)

    @get("/{assistant_id:str}/graph", operation_id="GetAssistantGraph", responses=api_errors(404))
    async def get_graph(
        self,
        principal: PrincipalDep,
        runtime: RuntimeDep,
        assistant_id: AssistantId,
        xray: Annotated[
            bool | int, QueryParameter(description="Include subgraphs (true, or a depth).")
        ] = False,
    ) -> dict[str, Any]:
        """Return the graph's nodes and edges (drawable by Studio)."""
        await _repo(runtime).get(principal, assistant_id)
        return cast(dict[str, Any], runtime.graph.get_graph(xray=xray).to_json())

    @get(
        "/{assistant_id:str}/schemas",
        operation_id="GetAssistantSchemas",
        responses=api_errors(404),
    )
    async def get_schemas(
        self, principal: PrincipalDep, runtime: RuntimeDep, assistant_id: AssistantId
    ) -> GraphSchemaOut:
        """Return the input, output, state, config and context JSON schemas."""
        await _repo(runtime).get(principal, assistant_id)
        return graph_schemas(runtime)

    @get(
        "/{assistant_id:str}/subgraphs",
        operation_id="GetAssistantSubgraphs",
        responses=api_errors(404),
    )
    async def get_subgraphs(
        self,
        principal: PrincipalDep,
        runtime: RuntimeDep,
        assistant_id: AssistantId,
        recurse: Recurse = False,
    ) -> dict[str, Any]:
        """Return the graph's subgraphs: none."""
        del recurse
        await _repo(runtime).get(principal, assistant_id)
        return {}

    @get(
        "/{assistant_id:str}/subgraphs/{namespace:str}",
        operation_id="GetAssistantSubgraphsByNamespace",
        responses=api_errors(404),
    )
    async def get_subgraphs_in(
        self,
        principal: PrincipalDep,
        runtime: RuntimeDep,
        assistant_id: AssistantId,
        namespace: FromPath[str],
        recurse: Recurse = False,
    ) -> dict[str, Any]:
        """Return the subgraphs under a namespace: none."""
        del recurse, namespace
        await _repo(runtime).get(principal, assistant_id)
        return {}

    @post(
        "/{assistant_id:str}/versions",
        operation_id="ListAssistantVersions",
        status_code=200,
        responses=api_errors(404, body=True),
    )
    async def versions(
        self,
        principal: PrincipalDep,
        runtime: RuntimeDep,
        assistant_id: AssistantId,
        data: JSONBody[AssistantVersionsSearch],
    ) -> list[AssistantVersionRow]:
        """Return the assistant's versions, newest first, filtered by metadata."""
        return await _repo(runtime).versions(
            principal, assistant_id, metadata=data.metadata, limit=data.limit, offset=data.offset
        )

    @post(
        "/{assistant_id:str}/latest",
        operation_id="SetLatestAssistantVersion",
        status_code=200,
        responses=api_errors(403, 404, body=True),
    )
    async def latest(
        self,
        principal: PrincipalDep,
        runtime: RuntimeDep,
        assistant_id: AssistantId,
        data: JSONBody[AssistantLatest],
    ) -> AssistantOut:
        """Make a stored version the latest, the one new runs use (role admin).

        403 for the system assistant, 404 for a missing version or another tenant's.
        """
        repo = _repo(runtime)
        await _writable(repo, principal, assistant_id)
        return await repo.set_latest(principal, assistant_id, data.version)


__all__ = [
    "ASSISTANT_ID",
    "GRAPH_ID",
    "SYSTEM_ASSISTANT",
    "AssistantsController",
    "graph_schemas",
    "json_schema_of",
]
