"""Assistants: one read-only system assistant per graph (`agent`), as langgraph-api creates.

Its id is `uuid5(6ba7b821-9dad-11d1-80b4-00c04fd430c8, "agent")`; `agent` (the graph name) is
accepted wherever an assistant id is. Creating, changing or deleting assistants answers 403
(404 for an unknown graph): the service serves a fixed graph.
"""

import logging
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, TypeAlias, cast, get_type_hints, is_typeddict

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody, PathParameter, QueryParameter
from pydantic import TypeAdapter

from core.errors import Forbidden, NotFound
from graph.runtime import Runtime
from server.auth import PrincipalDep
from server.openapi import api_errors
from server.routes.deps import RuntimeDep
from server.schemas import AssistantCount, AssistantOut, AssistantSearch, GraphSchemaOut

logger = logging.getLogger(__name__)

GRAPH_ID = "agent"
SYSTEM_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
ASSISTANT_ID = str(uuid.uuid5(SYSTEM_NAMESPACE, GRAPH_ID))
_CREATED_AT = datetime(2025, 1, 1, tzinfo=UTC)

SYSTEM_ASSISTANT: AssistantOut = {
    "assistant_id": ASSISTANT_ID,
    "graph_id": GRAPH_ID,
    "config": {},
    "context": {},
    "metadata": {"created_by": "system"},
    "version": 1,
    "name": GRAPH_ID,
    "description": "Steward support agent: policy answers, order look-ups, approved refunds.",
    "created_at": _CREATED_AT,
    "updated_at": _CREATED_AT,
}


def resolve_assistant(assistant_id: str) -> AssistantOut:
    """Return the assistant for an id or graph name.

    Raises:
        NotFound: anything but the system assistant's id or `agent`.
    """
    if assistant_id in (ASSISTANT_ID, GRAPH_ID):
        return SYSTEM_ASSISTANT
    raise NotFound(f"assistant {assistant_id!r} not found (this server serves {GRAPH_ID!r})")


def _matches(
    a: AssistantOut,
    metadata: JSONBody[dict[str, Any]] | None,
    graph_id: str | None,
    name: str | None,
) -> bool:
    if graph_id is not None and graph_id != a["graph_id"]:
        return False
    if name is not None and name.lower() not in a["name"].lower():
        return False
    return not metadata or all(a["metadata"].get(k) == v for k, v in metadata.items())


def _select(a: AssistantOut, select: list[str] | None) -> dict[str, Any]:
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

_READ_ONLY = (
    "assistants are read-only on this server: use the system assistant "
    f"{ASSISTANT_ID} (or the graph name {GRAPH_ID!r})"
)


class AssistantsController(Controller):
    """The system assistant: search, count, get, graph, schemas, subgraphs."""

    path = "/assistants"
    tags = ["assistants"]

    @post(
        "/",
        operation_id="CreateAssistant",
        status_code=200,
        responses=api_errors(403, 404, body=True),
    )
    async def create_assistant(
        self, principal: PrincipalDep, data: JSONBody[dict[str, Any]]
    ) -> AssistantOut:
        """Refuse: 404 for an unknown `graph_id`, 403 otherwise (assistants are fixed)."""
        del principal
        graph_id = data.get("graph_id")
        if graph_id is not None and graph_id != GRAPH_ID:
            raise NotFound(f"graph {graph_id!r} not found (this server serves {GRAPH_ID!r})")
        raise Forbidden(_READ_ONLY)

    @post(
        "/search",
        operation_id="SearchAssistants",
        status_code=200,
        responses=api_errors(body=True),
    )
    async def search(
        self, principal: PrincipalDep, data: JSONBody[AssistantSearch]
    ) -> list[dict[str, Any]]:
        """List assistants matching metadata, graph id and name."""
        del principal
        found = [
            a for a in (SYSTEM_ASSISTANT,) if _matches(a, data.metadata, data.graph_id, data.name)
        ]
        return [_select(a, data.select) for a in found[data.offset : data.offset + data.limit]]

    @post(
        "/count", operation_id="CountAssistants", status_code=200, responses=api_errors(body=True)
    )
    async def count(self, principal: PrincipalDep, data: JSONBody[AssistantCount]) -> int:
        """Count assistants matching metadata, graph id and name."""
        del principal
        return int(_matches(SYSTEM_ASSISTANT, data.metadata, data.graph_id, data.name))

    @get("/{assistant_id:str}", operation_id="GetAssistant", responses=api_errors(404))
    async def get_assistant(
        self, principal: PrincipalDep, assistant_id: AssistantId
    ) -> AssistantOut:
        """Return the assistant by id or graph name."""
        del principal
        return resolve_assistant(assistant_id)

    @patch("/{assistant_id:str}", operation_id="PatchAssistant", responses=api_errors(403, 404))
    async def patch_assistant(
        self, principal: PrincipalDep, assistant_id: AssistantId
    ) -> AssistantOut:
        """Refuse: assistants are read-only (403; 404 for an unknown id)."""
        del principal
        resolve_assistant(assistant_id)
        raise Forbidden(_READ_ONLY)

    @delete(
        "/{assistant_id:str}",
        operation_id="DeleteAssistant",
        status_code=204,
        responses=api_errors(403, 404),
    )
    async def delete_assistant(self, principal: PrincipalDep, assistant_id: AssistantId) -> None:
        """Refuse: assistants are read-only (403; 404 for an unknown id)."""
        del principal
        resolve_assistant(assistant_id)
        raise Forbidden(_READ_ONLY)

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
        del principal
        resolve_assistant(assistant_id)
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
        del principal
        resolve_assistant(assistant_id)
        return graph_schemas(runtime)

    @get(
        "/{assistant_id:str}/subgraphs",
        operation_id="GetAssistantSubgraphs",
        responses=api_errors(404),
    )
    async def get_subgraphs(
        self, principal: PrincipalDep, assistant_id: AssistantId, recurse: Recurse = False
    ) -> dict[str, Any]:
        """Return the graph's subgraphs: none."""
        del principal, recurse
        resolve_assistant(assistant_id)
        return {}

    @get(
        "/{assistant_id:str}/subgraphs/{namespace:str}",
        operation_id="GetAssistantSubgraphsByNamespace",
        responses=api_errors(404),
    )
    async def get_subgraphs_in(
        self,
        principal: PrincipalDep,
        assistant_id: AssistantId,
        namespace: FromPath[str],
        recurse: Recurse = False,
    ) -> dict[str, Any]:
        """Return the subgraphs under a namespace: none."""
        del principal, recurse, namespace
        resolve_assistant(assistant_id)
        return {}

    @post(
        "/{assistant_id:str}/versions",
        operation_id="ListAssistantVersions",
        status_code=200,
        responses=api_errors(404),
    )
    async def versions(
        self, principal: PrincipalDep, assistant_id: AssistantId
    ) -> list[AssistantOut]:
        """Return the assistant's versions: the only one."""
        del principal
        return [resolve_assistant(assistant_id)]

    @post(
        "/{assistant_id:str}/latest",
        operation_id="SetLatestAssistantVersion",
        status_code=200,
        responses=api_errors(404),
    )
    async def latest(
        self, principal: PrincipalDep, assistant_id: AssistantId
    ) -> Response[AssistantOut]:
        """Return the assistant (version 1 is always the latest)."""
        del principal
        return Response(resolve_assistant(assistant_id))


__all__ = [
    "ASSISTANT_ID",
    "GRAPH_ID",
    "SYSTEM_ASSISTANT",
    "AssistantsController",
    "graph_schemas",
    "json_schema_of",
    "resolve_assistant",
]
