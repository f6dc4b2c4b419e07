"""Assistants: the read-only system assistant and each tenant's versioned assistants.

The system assistant (`agent`, id `uuid5(6ba7b821-9dad-11d1-80b4-00c04fd430c8, "agent")`, as
langgraph-api derives it) is the same for everyone and is not stored; the graph name `agent`
is accepted wherever its id is. A tenant's assistants live in `assistants` (the latest
version, which runs use) and `assistant_versions` (every version), keyed by tenant: another
tenant's assistant is indistinguishable from a missing one.

This module owns every statement on both tables. It stores what it is given: the routes
validate configs (`server.runs.admission.check_assistant_config`) and decide who may write.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

from psycopg import sql
from psycopg.types.json import Jsonb

from core.errors import Conflict, NotFound
from core.identity import Principal

if TYPE_CHECKING:
    from core.db.pool import Conn, DbPool

GRAPH_ID = "agent"
"""The one graph this service serves."""
SYSTEM_ASSISTANT_NAMESPACE = uuid.UUID("6ba7b821-9dad-11d1-80b4-00c04fd430c8")
ASSISTANT_ID = str(uuid.uuid5(SYSTEM_ASSISTANT_NAMESPACE, GRAPH_ID))
"""The system assistant's id, as langgraph-api derives it from the graph id."""
_SYSTEM_CREATED_AT = datetime(2025, 1, 1, tzinfo=UTC)

SortBy = Literal["assistant_id", "graph_id", "name", "created_at", "updated_at"]
SortOrder = Literal["asc", "desc"]
IfExists = Literal["raise", "do_nothing"]


class AssistantVersionRow(TypedDict):
    """One version of an assistant (`langgraph_sdk.schema.AssistantVersion`)."""

    assistant_id: str
    graph_id: str
    config: dict[str, Any]
    context: dict[str, Any]
    metadata: dict[str, Any]
    version: int
    name: str
    description: str | None
    created_at: datetime


class AssistantRow(AssistantVersionRow):
    """An assistant as the API shows it (`langgraph_sdk.schema.Assistant`): latest version."""

    updated_at: datetime


SYSTEM_ASSISTANT: AssistantRow = {
    "assistant_id": ASSISTANT_ID,
    "graph_id": GRAPH_ID,
    "config": {},
    "context": {},
    "metadata": {"created_by": "system"},
    "version": 1,
    "name": GRAPH_ID,
    "description": "Steward support agent: policy answers, order look-ups, approved refunds.",
    "created_at": _SYSTEM_CREATED_AT,
    "updated_at": _SYSTEM_CREATED_AT,
}


def is_system(assistant_id: str) -> bool:
    """True for the system assistant's id (in any spelling `uuid.UUID` reads) or graph name."""
    if assistant_id == GRAPH_ID:
        return True
    parsed = _uuid(assistant_id)
    return parsed is not None and str(parsed) == ASSISTANT_ID


def _uuid(assistant_id: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(assistant_id)
    except ValueError:
        return None


def _not_found(assistant_id: str) -> NotFound:
    return NotFound(f"assistant {assistant_id} not found")


_COLUMNS = sql.SQL(
    "assistant_id::text AS assistant_id, graph_id, config, context, metadata, version, name,"
    " description, created_at, updated_at"
)
_VERSION_COLUMNS = sql.SQL(
    "assistant_id::text AS assistant_id, graph_id, config, context, metadata, version, name,"
    " description, created_at"
)


def _visible() -> sql.Composable:
    """The assistants a tenant sees: the system assistant, then its own (a derived table)."""
    return sql.SQL(
        "(SELECT %(sys_id)s::text AS assistant_id, %(sys_graph)s::text AS graph_id,"
        " %(sys_config)s::jsonb AS config, %(sys_context)s::jsonb AS context,"
        " %(sys_metadata)s::jsonb AS metadata, 1 AS version, %(sys_name)s::text AS name,"
        " %(sys_description)s::text AS description, %(sys_created)s::timestamptz AS created_at,"
        " %(sys_created)s::timestamptz AS updated_at"
        " UNION ALL SELECT {cols} FROM assistants WHERE tenant_id = %(tenant)s) AS visible"
    ).format(cols=_COLUMNS)


def _visible_params(principal: Principal) -> dict[str, Any]:
    s = SYSTEM_ASSISTANT
    return {
        "sys_id": s["assistant_id"],
        "sys_graph": s["graph_id"],
        "sys_config": Jsonb(s["config"]),
        "sys_context": Jsonb(s["context"]),
        "sys_metadata": Jsonb(s["metadata"]),
        "sys_name": s["name"],
        "sys_description": s["description"],
        "sys_created": s["created_at"],
        "tenant": principal.tenant_id,
    }


def _filters(
    metadata: dict[str, Any] | None, graph_id: str | None, name: str | None
) -> tuple[sql.Composable, dict[str, Any]]:
    parts: list[sql.Composable] = [sql.SQL("TRUE")]
    params: dict[str, Any] = {}
    if metadata:
        parts.append(sql.SQL("metadata @> %(metadata)s"))
        params["metadata"] = Jsonb(metadata)
    if graph_id is not None:
        parts.append(sql.SQL("graph_id = %(graph_id)s"))
        params["graph_id"] = graph_id
    if name is not None:
        parts.append(sql.SQL("strpos(lower(name), lower(%(name)s)) > 0"))
        params["name"] = name
    return sql.SQL(" AND ").join(parts), params


async def _locked(conn: Conn, principal: Principal, aid: uuid.UUID) -> AssistantRow | None:
    query = sql.SQL(
        "SELECT {cols} FROM assistants WHERE tenant_id = %s AND assistant_id = %s FOR UPDATE"
    ).format(cols=_COLUMNS)
    cur = await conn.execute(query, (principal.tenant_id, aid))
    return cast(AssistantRow | None, await cur.fetchone())


class AssistantsRepo:
    """Create, read, version, update, delete and search assistants on behalf of a principal.

    Reads include the system assistant; writes to it are the caller's to refuse (it is
    never stored, so they would find nothing here).
    """

    def __init__(self, pool: DbPool) -> None:
        self._pool = pool

    async def get(self, principal: Principal, assistant_id: str) -> AssistantRow:
        """Return the assistant by id (or `agent`), as the principal's tenant sees it.

        Raises:
            NotFound: missing, not a UUID, or another tenant's (the same answer on purpose).
        """
        if is_system(assistant_id):
            return SYSTEM_ASSISTANT
        aid = _uuid(assistant_id)
        if aid is None:
            raise _not_found(assistant_id)
        query = sql.SQL(
            "SELECT {cols} FROM assistants WHERE tenant_id = %s AND assistant_id = %s"
        ).format(cols=_COLUMNS)
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, (principal.tenant_id, aid))
            row = await cur.fetchone()
        if row is None:
            raise _not_found(assistant_id)
        return cast(AssistantRow, row)

    async def create(
        self,
        principal: Principal,
        *,
        assistant_id: uuid.UUID | None,
        graph_id: str,
        config: dict[str, Any],
        context: dict[str, Any],
        metadata: dict[str, Any],
        name: str,
        description: str | None,
        if_exists: IfExists = "raise",
    ) -> AssistantRow:
        """Create version 1 of an assistant in the principal's tenant.

        Raises:
            Conflict: the id is taken in this tenant (or is the system assistant's), unless
                `if_exists="do_nothing"`, which returns the existing assistant unchanged.
        """
        aid = assistant_id or uuid.uuid4()
        if str(aid) == ASSISTANT_ID:
            if if_exists == "do_nothing":
                return SYSTEM_ASSISTANT
            raise Conflict(f"assistant {aid} already exists")
        params = {
            "tenant": principal.tenant_id,
            "aid": aid,
            "graph": graph_id,
            "name": name,
            "description": description,
            "config": Jsonb(config),
            "context": Jsonb(context),
            "metadata": Jsonb(metadata),
            "owner": principal.user_id,
        }
        insert = sql.SQL(
            "INSERT INTO assistants (tenant_id, assistant_id, graph_id, name, description,"
            " config, context, metadata, version, owner)"
            " VALUES (%(tenant)s, %(aid)s, %(graph)s, %(name)s, %(description)s, %(config)s,"
            " %(context)s, %(metadata)s, 1, %(owner)s)"
            " ON CONFLICT (tenant_id, assistant_id) DO NOTHING RETURNING {cols}"
        ).format(cols=_COLUMNS)
        async with self._pool.connection() as conn, conn.transaction():
            cur = await conn.execute(insert, params)
            row = await cur.fetchone()
            if row is not None:
                await conn.execute(
                    "INSERT INTO assistant_versions (tenant_id, assistant_id, version, graph_id,"
                    " name, description, config, context, metadata, created_at)"
                    " VALUES (%(tenant)s, %(aid)s, 1, %(graph)s, %(name)s, %(description)s,"
                    " %(config)s, %(context)s, %(metadata)s, %(created)s)",
                    {**params, "created": row["created_at"]},
                )
        if row is not None:
            return cast(AssistantRow, row)
        if if_exists == "do_nothing":
            return await self.get(principal, str(aid))
        raise Conflict(f"assistant {aid} already exists")

    async def update(
        self,
        principal: Principal,
        assistant_id: str,
        *,
        graph_id: str | None = None,
        config: dict[str, Any] | None = None,
        context: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        name: str | None = None,
        description: str | None = None,
    ) -> AssistantRow:
        """Write a new version from the latest one and make it the latest.

        `None` keeps a field; `config` and `context` are replaced, `metadata` is merged into
        the latest version's (top-level keys replaced). The new version number is one above
        the highest ever written (also after `set_latest` went back to an older one).

        Raises:
            NotFound: missing or another tenant's.
        """
        aid = _uuid(assistant_id)
        if aid is None:
            raise _not_found(assistant_id)
        async with self._pool.connection() as conn, conn.transaction():
            current = await _locked(conn, principal, aid)
            if current is None:
                raise _not_found(assistant_id)
            cur = await conn.execute(
                "SELECT max(version) AS v FROM assistant_versions"
                " WHERE tenant_id = %s AND assistant_id = %s",
                (principal.tenant_id, aid),
            )
            top = await cur.fetchone()
            version = int(top["v"] if top and top["v"] is not None else current["version"]) + 1
            values = {
                "graph": graph_id if graph_id is not None else current["graph_id"],
                "config": Jsonb(config if config is not None else current["config"]),
                "context": Jsonb(context if context is not None else current["context"]),
                "metadata": Jsonb({**current["metadata"], **(metadata or {})}),
                "name": name if name is not None else current["name"],
                "description": description if description is not None else current["description"],
                "version": version,
                "tenant": principal.tenant_id,
                "aid": aid,
            }
            await conn.execute(
                "INSERT INTO assistant_versions (tenant_id, assistant_id, version, graph_id,"
                " name, description, config, context, metadata)"
                " VALUES (%(tenant)s, %(aid)s, %(version)s, %(graph)s, %(name)s,"
                " %(description)s, %(config)s, %(context)s, %(metadata)s)",
                values,
            )
            query = sql.SQL(
                "UPDATE assistants SET graph_id = %(graph)s, name = %(name)s,"
                " description = %(description)s, config = %(config)s, context = %(context)s,"
                " metadata = %(metadata)s, version = %(version)s, updated_at = now()"
                " WHERE tenant_id = %(tenant)s AND assistant_id = %(aid)s RETURNING {cols}"
            ).format(cols=_COLUMNS)
            cur = await conn.execute(query, values)
            row = await cur.fetchone()
        return cast(AssistantRow, row)

    async def set_latest(
        self, principal: Principal, assistant_id: str, version: int
    ) -> AssistantRow:
        """Make a stored version the latest one (the one runs use).

        Raises:
            NotFound: the assistant or the version does not exist in the principal's tenant.
        """
        aid = _uuid(assistant_id)
        if aid is None:
            raise _not_found(assistant_id)
        async with self._pool.connection() as conn, conn.transaction():
            if await _locked(conn, principal, aid) is None:
                raise _not_found(assistant_id)
            query = sql.SQL(
                "UPDATE assistants a SET graph_id = v.graph_id, name = v.name,"
                " description = v.description, config = v.config, context = v.context,"
                " metadata = v.metadata, version = v.version, updated_at = now()"
                " FROM assistant_versions v"
                " WHERE a.tenant_id = %(tenant)s AND a.assistant_id = %(aid)s"
                " AND v.tenant_id = a.tenant_id AND v.assistant_id = a.assistant_id"
                " AND v.version = %(version)s RETURNING {cols}"
            ).format(
                cols=sql.SQL(
                    "a.assistant_id::text AS assistant_id, a.graph_id, a.config, a.context,"
                    " a.metadata, a.version, a.name, a.description, a.created_at, a.updated_at"
                )
            )
            cur = await conn.execute(
                query, {"tenant": principal.tenant_id, "aid": aid, "version": version}
            )
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"version {version} of assistant {assistant_id} not found")
        return cast(AssistantRow, row)

    async def delete(self, principal: Principal, assistant_id: str) -> None:
        """Delete an assistant and all its versions.

        Runs already created with it keep the configuration they were created with.

        Raises:
            NotFound: missing or another tenant's.
        """
        aid = _uuid(assistant_id)
        if aid is None:
            raise _not_found(assistant_id)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "DELETE FROM assistants WHERE tenant_id = %s AND assistant_id = %s",
                (principal.tenant_id, aid),
            )
        if cur.rowcount == 0:
            raise _not_found(assistant_id)

    async def versions(
        self,
        principal: Principal,
        assistant_id: str,
        *,
        metadata: dict[str, Any] | None = None,
        limit: int = 10,
        offset: int = 0,
    ) -> list[AssistantVersionRow]:
        """The assistant's versions, newest first, filtered by metadata containment.

        Raises:
            NotFound: missing or another tenant's.
        """
        if is_system(assistant_id):
            s = SYSTEM_ASSISTANT
            if metadata and any(s["metadata"].get(k) != v for k, v in metadata.items()):
                return []
            only: AssistantVersionRow = {
                "assistant_id": s["assistant_id"],
                "graph_id": s["graph_id"],
                "config": s["config"],
                "context": s["context"],
                "metadata": s["metadata"],
                "version": s["version"],
                "name": s["name"],
                "description": s["description"],
                "created_at": s["created_at"],
            }
            return [only][offset : offset + limit]
        aid = _uuid(assistant_id)
        if aid is None:
            raise _not_found(assistant_id)
        where, params = _filters(metadata, None, None)
        query = sql.SQL(
            "SELECT {cols} FROM assistant_versions"
            " WHERE tenant_id = %(tenant)s AND assistant_id = %(aid)s AND {where}"
            " ORDER BY version DESC LIMIT %(limit)s OFFSET %(offset)s"
        ).format(cols=_VERSION_COLUMNS, where=where)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM assistants WHERE tenant_id = %s AND assistant_id = %s",
                (principal.tenant_id, aid),
            )
            if await cur.fetchone() is None:
                raise _not_found(assistant_id)
            cur = await conn.execute(
                query,
                {
                    **params,
                    "tenant": principal.tenant_id,
                    "aid": aid,
                    "limit": limit,
                    "offset": offset,
                },
            )
            rows = await cur.fetchall()
        return [cast(AssistantVersionRow, r) for r in rows]

    async def search(
        self,
        principal: Principal,
        *,
        metadata: dict[str, Any] | None = None,
        graph_id: str | None = None,
        name: str | None = None,
        limit: int = 10,
        offset: int = 0,
        sort_by: SortBy | None = None,
        sort_order: SortOrder | None = None,
    ) -> tuple[list[AssistantRow], bool]:
        """The visible assistants matching every filter, and whether more follow this page.

        Default order: newest first (`created_at` descending), as langgraph-api sorts.
        """
        column = sort_by or "created_at"
        if column not in ("assistant_id", "graph_id", "name", "created_at", "updated_at"):
            raise ValueError(f"cannot sort by {column!r}")
        ascending = sort_order == "asc" if sort_by else False
        direction = sql.SQL("ASC" if ascending else "DESC")
        key: sql.Composable = sql.Identifier(column)
        if column in ("name", "graph_id"):
            key = sql.SQL("lower({})").format(key)
        where, params = _filters(metadata, graph_id, name)
        query = sql.SQL(
            "SELECT * FROM {visible} WHERE {where}"
            " ORDER BY {key} {dir}, assistant_id {dir} LIMIT %(limit)s OFFSET %(offset)s"
        ).format(visible=_visible(), where=where, key=key, dir=direction)
        async with self._pool.connection() as conn:
            cur = await conn.execute(
                query,
                {
                    **_visible_params(principal),
                    **params,
                    "limit": limit + 1,
                    "offset": offset,
                },
            )
            rows = await cur.fetchall()
        found = [cast(AssistantRow, r) for r in rows]
        return found[:limit], len(found) > limit

    async def count(
        self,
        principal: Principal,
        *,
        metadata: dict[str, Any] | None = None,
        graph_id: str | None = None,
        name: str | None = None,
    ) -> int:
        """Count the visible assistants matching every filter."""
        where, params = _filters(metadata, graph_id, name)
        query = sql.SQL("SELECT count(*) AS n FROM {visible} WHERE {where}").format(
            visible=_visible(), where=where
        )
        async with self._pool.connection() as conn:
            cur = await conn.execute(query, {**_visible_params(principal), **params})
            row = await cur.fetchone()
        return int(row["n"]) if row else 0


__all__ = [
    "ASSISTANT_ID",
    "GRAPH_ID",
    "SYSTEM_ASSISTANT",
    "SYSTEM_ASSISTANT_NAMESPACE",
    "AssistantRow",
    "AssistantVersionRow",
    "AssistantsRepo",
    "IfExists",
    "SortBy",
    "SortOrder",
    "is_system",
]
