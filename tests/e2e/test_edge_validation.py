"""No 500 on client input: every hand probe of issue 9 answers a 4xx naming the field.

Drives `steward serve` over HTTP (httpx). Each case was a 500, a 200 with a failed run, or a
200 with input the graph refuses later, before `server/edge.py` and the message limits.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from core.db.pool import DbPool
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e

DEEP = "[" * 1000 + "]" * 1000


def _say(text: str = "Where is my order?") -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


@pytest.fixture(name="http")
async def fx_http(server: RunningServer) -> Any:
    key = await server.keys("edge-admin", f"t-{uuid.uuid4().hex[:8]}", "admin")
    async with httpx.AsyncClient(
        base_url=server.url, headers={"x-api-key": key}, timeout=30
    ) as client:
        yield client


@pytest.fixture(name="tid")
async def fx_tid(http: httpx.AsyncClient) -> str:
    r = await http.post("/threads", json={})
    assert r.status_code == 200, r.text
    return str(r.json()["thread_id"])


def _expect(r: httpx.Response, status: int, *fragments: str) -> None:
    assert r.status_code == status, f"{r.status_code} {r.text[:500]}"
    detail = r.json()["detail"]
    for fragment in fragments:
        assert fragment in detail, detail


# --------------------------------------------------------------------------- NUL characters


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/threads", {"metadata": {"a": "x\u0000"}}, "metadata.a"),
        ("POST", "/threads/search", {"metadata": {"a": "\u0000"}}, "metadata.a"),
        ("POST", "/threads/search", {"metadata": {"k\u0000": 1}}, "metadata.k"),
        ("POST", "/threads/count", {"metadata": {"a": ["ok", "\u0000"]}}, "metadata.a[1]"),
        ("POST", "/assistants/search", {"name": "\u0000"}, "name"),
        ("POST", "/runs", {"input": _say(), "metadata": {"a": "\u0000"}}, "metadata.a"),
        (
            "POST",
            "/runs",
            {"input": _say(), "config": {"configurable": {"x": "\u0000"}}},
            "config.configurable.x",
        ),
        ("POST", "/runs", {"input": _say("hi\u0000")}, "input.messages[0].content"),
        ("POST", "/runs/cancel", {"thread_id": "\u0000"}, "thread_id"),
    ],
)
async def test_nul_in_bodies_is_refused_with_its_field(
    http: httpx.AsyncClient, method: str, path: str, body: Any, field: str
) -> None:
    r = await http.request(method, path, json=body)
    _expect(r, 422, field, "NUL")


async def test_nul_in_thread_paths_patch_and_state(http: httpx.AsyncClient, tid: str) -> None:
    _expect(
        await http.patch(f"/threads/{tid}", json={"metadata": {"x": "\u0000"}}),
        422,
        "metadata.x",
        "NUL",
    )
    _expect(
        await http.post(
            f"/threads/{tid}/state",
            json={"values": {"messages": [{"role": "user", "content": "\u0000"}]}},
        ),
        422,
        "values.messages[0]",
        "NUL",
    )
    _expect(
        await http.post(f"/threads/{tid}/history", json={"metadata": {"a": "\u0000"}}),
        422,
        "metadata.a",
        "NUL",
    )


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("/approvals?tenant=a%00b", "'tenant'"),
        ("/usage?user=%00", "'user'"),
        ("/threads/a%00b", "path"),
    ],
)
async def test_nul_in_query_and_path(http: httpx.AsyncClient, path: str, fragment: str) -> None:
    _expect(await http.get(path), 422, fragment, "NUL")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(key=st.text(max_size=8), prefix=st.text(max_size=8), suffix=st.text(max_size=8))
async def test_nul_anywhere_in_metadata_is_a_422_never_a_500(
    server: RunningServer, key: str, prefix: str, suffix: str
) -> None:
    api_key = await server.keys("edge-fuzz", "t-edge-fuzz", "user")
    value = f"{prefix}\u0000{suffix}"
    async with httpx.AsyncClient(base_url=server.url, headers={"x-api-key": api_key}) as c:
        for body in (
            {"metadata": {key: value}},
            {"metadata": {f"{key}\u0000": 1}},
            {"metadata": {key: [{"deep": value}]}},
        ):
            r = await c.post("/threads/search", json=body)
            assert r.status_code == 422, (body, r.text)
            assert "NUL" in r.json()["detail"]


# --------------------------------------------------------------------------- depth, JSON


@pytest.mark.parametrize(
    "path", ["/threads/search", "/threads", "/runs", "/runs/cancel", "/assistants/search"]
)
async def test_deep_json_is_refused_not_a_recursion_error(
    http: httpx.AsyncClient, path: str
) -> None:
    r = await http.post(
        path,
        content='{"metadata": {"a": ' + DEEP + "}}",
        headers={"content-type": "application/json"},
    )
    _expect(r, 422, "metadata.a", "nested deeper than 64")
    r = await http.post(path, content=DEEP * 1)
    _expect(r, 422, "nested deeper than 64")
    shallow = {"metadata": {"a": [[["fine"]]]}}
    assert (await http.post("/threads/search", json=shallow)).status_code == 200


@pytest.mark.parametrize("raw", [b'{"a": 1e999}', b'{"a": "\\ud800"}', b"{nope", b'{"a": NaN}'])
async def test_malformed_json_is_a_422(http: httpx.AsyncClient, raw: bytes) -> None:
    _expect(await http.post("/threads/search", content=raw), 422, "malformed JSON")


# --------------------------------------------------------------------------- integer ranges


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"offset": 2**63}, "offset"),
        ({"offset": 2**70}, "offset"),
        ({"offset": 1_000_001}, "offset"),
        ({"offset": -1}, "offset"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 2.5}, "limit"),
        ({"limit": "10"}, "limit"),
    ],
)
@pytest.mark.parametrize("path", ["/threads/search", "/assistants/search"])
async def test_search_pagination_is_bounded(
    http: httpx.AsyncClient, path: str, body: dict[str, Any], field: str
) -> None:
    _expect(await http.post(path, json=body), 422, field)


@pytest.mark.parametrize(
    "query",
    [
        f"offset={2**63}",
        "offset=1000001",
        "offset=-1",
        "limit=0",
        "limit=1001",
        "limit=true",
        "limit=1.5",
        f"limit={2**80}",
    ],
)
async def test_runs_list_pagination_is_bounded(
    http: httpx.AsyncClient, tid: str, query: str
) -> None:
    r = await http.get(f"/threads/{tid}/runs?{query}")
    _expect(r, 422, query.split("=")[0])


async def test_other_integer_fields(http: httpx.AsyncClient, tid: str) -> None:
    _expect(await http.get(f"/approvals?offset={2**63}"), 422, "offset")
    _expect(await http.post(f"/threads/{tid}/history", json={"limit": 2**70}), 422, "limit")
    _expect(
        await http.post("/runs", json={"input": _say(), "metadata": {"n": 2**64 - 1}}),
        422,
        "metadata.n",
        "out of range",
    )
    ok = await http.get(f"/threads/{tid}/runs?offset=1000000&limit=1000")
    assert ok.status_code == 200 and ok.json() == []


# --------------------------------------------------------------------------- run input


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (
            {"input": {"messages": [{"role": "wizard", "content": "hi"}]}},
            ("input.messages[0].role", "human, user"),
        ),
        (
            {"input": {"messages": [{"role": "assistant", "content": "hi"}]}},
            ("input.messages[0].role",),
        ),
        ({"input": {"messages": [{"role": "user", "content": 5}]}}, ("input.messages[0].content",)),
        (
            {
                "input": {
                    "messages": [
                        {
                            "role": "user",
                            "content": [{"type": "image_url", "image_url": {"url": "x"}}],
                        }
                    ]
                }
            },
            ("input.messages[0].content[0]", "only text"),
        ),
        (
            {"input": {"messages": [{"role": "user", "content": [7]}]}},
            ("input.messages[0].content[0]",),
        ),
        ({"input": [{"role": "user", "content": "hi"}]}, ("input", "object")),
        ({"input": {"messages": "hi"}}, ("input.messages", "list")),
        ({"input": {"messages": [5]}}, ("input.messages[0]",)),
        (
            {"input": {"messages": [{"role": "user", "content": "hi"}] * 51}},
            ("input.messages", "at most 50", "STEWARD_MAX_INPUT_MESSAGES"),
        ),
        (
            {"input": {"messages": [{"role": "user", "content": "hi"}] * 10_000}},
            ("input.messages", "at most 50"),
        ),
        (
            {"input": _say("a" * 8001)},
            ("input.messages[0].content", "8001", "STEWARD_MAX_INPUT_CHARS"),
        ),
        ({"input": _say("a" * 20_001)}, ("input.messages[0].content", "at most 8000")),
        (
            {
                "input": {
                    "messages": [
                        {"role": "user", "content": [{"type": "text", "text": "a" * 8001}]}
                    ]
                }
            },
            ("input.messages[0].content", "at most 8000"),
        ),
        (
            {
                "input": {
                    "messages": [
                        {"role": "user", "content": "hi"},
                        {"role": "user", "content": "  "},
                    ]
                }
            },
            ("input", "at least one new user message"),
        ),
    ],
)
@pytest.mark.parametrize("route", ["thread", "stateless"])
async def test_run_input_the_graph_would_refuse_never_starts(
    http: httpx.AsyncClient,
    tid: str,
    route: str,
    body: dict[str, Any],
    fragments: tuple[str, ...],
) -> None:
    path = f"/threads/{tid}/runs" if route == "thread" else "/runs"
    _expect(await http.post(path, json=body), 422, *fragments)
    if route == "thread":
        runs = (await http.get(f"/threads/{tid}/runs")).json()
        assert runs == [], "no run was created"


@pytest.mark.parametrize("route", ["/runs", "/runs/wait", "/runs/stream"])
@pytest.mark.parametrize("body", [{}, {"input": None}, {"from_a_newer_sdk": 1}])
async def test_a_stateless_run_without_input_is_refused_before_it_exists(
    server: RunningServer, db_pool: DbPool, route: str, body: dict[str, Any]
) -> None:
    """A stateless thread is new: nothing to continue, so no input is a 422, not a failed run."""
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    key = await server.keys("edge-user", tenant)
    async with httpx.AsyncClient(base_url=server.url, headers={"x-api-key": key}) as http:
        _expect(await http.post(route, json={"assistant_id": "agent", **body}), 422, "input")
    async with db_pool.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM runs WHERE tenant_id = %s", (tenant,))
        row = await cur.fetchone()
    assert row is not None and row["n"] == 0, "no run was created"


def _answered_500(metrics: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("steward_http_request_duration_seconds_count") and 'status="500"' in line
    )


async def test_a_refused_request_is_logged_and_measured_with_its_own_status(
    server: RunningServer, http: httpx.AsyncClient, tid: str
) -> None:
    """The edge's 422 (raised below the request log) is logged and counted as 422, not 500."""
    logged, counted = (
        server.log().count("status=500"),
        _answered_500((await http.get("/metrics")).text),
    )
    for path in ("/approvals?limit=%00", "/usage?x=%00", f"/threads/{tid}/runs?limit=%00"):
        assert (await http.get(path)).status_code == 422
    assert _answered_500((await http.get("/metrics")).text) == counted
    assert server.log().count("status=500") == logged


async def test_longest_accepted_message_runs(
    http: httpx.AsyncClient, tid: str, mock_llm_clean: Any
) -> None:
    text = "Is customer data encrypted at rest? " + "x" * (8000 - 36)
    assert len(text) == 8000
    r = await http.post(f"/threads/{tid}/runs/wait", json={"input": _say(text)})
    assert r.status_code == 200, r.text
    assert r.json()["response"]["refusal"] != "input_too_large"


async def test_state_write_messages_are_validated(http: httpx.AsyncClient, tid: str) -> None:
    def write(messages: Any) -> Any:
        return http.post(f"/threads/{tid}/state", json={"values": {"messages": messages}})

    _expect(await write([{"role": "wizard", "content": "x"}]), 422, "values.messages[0].role")
    _expect(await write([{"role": "ai", "content": {"a": 1}}]), 422, "values.messages[0].content")
    _expect(await write([{"role": "user", "content": "x"}] * 51), 422, "at most 50")
    _expect(
        await write([{"role": "ai", "content": "a" * 8001}]),
        422,
        "values.messages[0].content",
        "at most 8000",
    )
    _expect(
        await write([{"role": "ai", "content": [{"text": "no type"}]}]),
        422,
        "values.messages[0].content[0]",
    )
    ok = await write(
        [
            {"role": "system", "content": "note"},
            {"role": "ai", "content": [{"type": "text", "text": "hello"}]},
        ]
    )
    assert ok.status_code == 200, ok.text


# --------------------------------------------------------------------------- configurable


@pytest.mark.parametrize(
    "configurable",
    [
        {"role": "admin"},
        {"role": {"nested": 1}},
        {"user_id": "mallory"},
        {"tenant_id": "other"},
        {"requester_id": "mallory"},
        {"thread_id": str(uuid.uuid4())},
    ],
)
async def test_identity_keys_are_never_trusted(
    server: RunningServer, configurable: dict[str, Any]
) -> None:
    key = await server.keys("edge-user", f"t-{uuid.uuid4().hex[:8]}", "user")
    async with httpx.AsyncClient(base_url=server.url, headers={"x-api-key": key}) as c:
        r = await c.post("/runs", json={"input": _say(), "config": {"configurable": configurable}})
    [name] = configurable
    _expect(r, 422, f"config.configurable.{name}", "set by the server")


@pytest.mark.parametrize(
    "name",
    [
        "checkpoint_id",
        "checkpoint_ns",
        "checkpoint_map",
        "thread_ts",
        "run_id",
        "__pregel_scratchpad",
    ],
)
async def test_checkpoint_and_internal_keys_are_refused(http: httpx.AsyncClient, name: str) -> None:
    r = await http.post("/runs", json={"input": _say(), "config": {"configurable": {name: "x"}}})
    _expect(r, 422, f"config.configurable.{name}", "reserved")


@pytest.mark.parametrize(
    "config",
    [
        {"configurable": "abc"},
        {"configurable": [["role", "admin"]]},
        {"run_name": 5},
        {"tags": "x"},
        {"recursion_limit": True},
        {"callbacks": []},
    ],
)
async def test_malformed_config_is_a_422(http: httpx.AsyncClient, config: Any) -> None:
    r = await http.post("/runs", json={"input": _say(), "config": config})
    _expect(r, 422, "config")


async def test_unknown_configurable_keys_pass_through_to_the_graph(
    http: httpx.AsyncClient, tid: str
) -> None:
    r = await http.post(
        f"/threads/{tid}/runs",
        json={"input": _say(), "config": {"configurable": {"ui_theme": "dark", "n": 3}}},
    )
    assert r.status_code == 200, r.text
    assert r.json()["kwargs"]["config"]["configurable"] == {"ui_theme": "dark", "n": 3}
    run_id = r.json()["run_id"]
    joined = await http.get(f"/threads/{tid}/runs/{run_id}/join")
    assert joined.status_code == 200


# --------------------------------------------------------------------------- shapes


async def test_odd_shapes_and_headers_are_4xx(http: httpx.AsyncClient, tid: str) -> None:
    assert (await http.post("/threads/search", json=[])).status_code == 422
    assert (await http.post(f"/threads/{tid}/runs", json=[])).status_code == 422
    assert (await http.post("/runs/cancel", json=[1])).status_code == 422
    # found by the schemathesis run: an unhashable stream mode was a TypeError (500)
    _expect(
        await http.post("/runs", json={"input": _say(), "stream_mode": [[]]}), 422, "stream_mode"
    )
    # and a stateless run with a command that is not an object was an AttributeError (500)
    _expect(await http.post("/runs", json={"command": 1}), 422, "command")
    assert (await http.post("/threads/search", content=b"")).status_code == 422
    big = b'{"metadata": {"a": "' + b"x" * 1_100_000 + b'"}}'
    _expect(await http.post("/threads/search", content=big), 413, "too large")
    for ctype in (";;;==", "text/plain", "application/json; charset=nope", "a/b/c"):
        r = await http.post("/threads/search", content=b"{}", headers={"content-type": ctype})
        assert r.status_code < 500, (ctype, r.status_code, r.text)
    for path in (
        f"/threads/{uuid.uuid4()}z",
        "/approvals/not-a-uuid",
        f"/threads/{tid}/runs/not-a-uuid",
    ):
        assert (await http.get(path)).status_code == 404, path
    assert (
        await http.post(f"/threads/{tid}/runs/{uuid.uuid4()}/cancel?wait=maybe")
    ).status_code == 422


async def test_unauthenticated_bad_body_is_still_a_401(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as c:
        r = await c.post("/runs", content='{"input": {"messages": ' + DEEP + "}}")
    assert r.status_code == 401, r.text
