"""Schemathesis over the served OpenAPI schema (`/docs/openapi.json`): no 5xx, no surprise.

Every operation of the schema gets generated requests (valid and invalid bodies, parameters and
paths) against the real `steward serve` with an admin key; the checks are "not a server
error" and schemathesis's `status_code_conformance` (every status answered is documented for
its operation; the undocumented ones are collected and listed at the end). The run-creation
routes read their body themselves (no body schema in OpenAPI), so their bodies are fuzzed from
`RunCreate`'s JSON schema with hypothesis-jsonschema.

Bounded for CI: `STEWARD_FUZZ_EXAMPLES` examples per operation and generation mode (positive:
schema-valid requests; negative: requests that violate the schema), default 3, about 90 s on
two busy cores; `STEWARD_FUZZ_EXAMPLES=100 pytest tests/e2e/test_schemathesis.py` is the slow
profile.
The number of cases run is printed at the end of the session (`-s` shows it).
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from hypothesis_jsonschema import from_schema
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import status_code_conformance

from server.runs.models import RunCreate

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("STEWARD_FUZZ_EXAMPLES", "3"))
STATS: Counter[str] = Counter()
SERVER_ERRORS: list[str] = []
UNDOCUMENTED: set[str] = set()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    started = time.monotonic()
    yield
    operations = sum(1 for k in STATS if " " in k)
    print(
        f"\nschemathesis: {STATS['cases']} cases over {operations} operations, "
        f"{STATS['run_bodies']} fuzzed run bodies, {len(SERVER_ERRORS)} server errors, "
        f"{len(UNDOCUMENTED)} undocumented statuses, "
        f"{time.monotonic() - started:.1f}s"
    )


@pytest.fixture(scope="module", name="admin_key")
async def fx_admin_key(server: RunningServer) -> str:
    return await server.keys("fuzz-admin", f"t-fuzz-{uuid.uuid4().hex[:8]}", "admin")


def test_no_server_error_nor_undocumented_status_for_any_generated_request(
    admin_key: str, server: RunningServer
) -> None:
    api = schemathesis.openapi.from_url(f"{server.url}/docs/openapi.json")
    # An Err has no ok(): a schema that fails to load fails the test here.
    operations = [result.ok() for result in api.get_all_operations()]  # type: ignore[union-attr]
    assert len(operations) > 40, "the schema lost operations"
    for operation, mode in itertools.product(operations, list(schemathesis.GenerationMode)):

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy(generation_mode=mode))
        def one(case: Any) -> None:
            STATS["cases"] += 1
            STATS[f"{case.method} {case.path}"] += 1
            response = case.call(base_url=server.url, headers={"x-api-key": admin_key}, timeout=30)
            if response.status_code >= 500:
                SERVER_ERRORS.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}"
                )
            assert response.status_code < 500, (
                f"{response.status_code} for {case.as_curl_command()}\n{response.text[:2000]}"
            )
            try:
                case.validate_response(response, checks=[status_code_conformance])
            except FailureGroup:  # collected, so that one run lists them all
                UNDOCUMENTED.add(f"{case.method} {case.path} -> {response.status_code}")

        try:
            one()
        except Unsatisfiable:
            # No request can violate an operation without parameters or body (negative mode).
            assert mode is schemathesis.GenerationMode.NEGATIVE, operation.label
    assert SERVER_ERRORS == []
    assert sorted(UNDOCUMENTED) == [], "statuses answered but not documented"


@settings(
    max_examples=EXAMPLES * 15,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(
    body=from_schema(RunCreate.model_json_schema())
    | st.dictionaries(
        st.sampled_from(
            [
                "input",
                "config",
                "command",
                "metadata",
                "context",
                "checkpoint",
                "interrupt_before",
                "stream_mode",
                "after_seconds",
            ]
        ),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=20),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=8), inner, max_size=3)
            ),
            max_leaves=10,
        ),
        max_size=4,
    )
)
async def test_no_server_error_for_any_run_body(
    server: RunningServer, admin_key: str, body: dict[str, Any]
) -> None:
    STATS["run_bodies"] += 1
    async with httpx.AsyncClient(
        base_url=server.url, headers={"x-api-key": admin_key}, timeout=30
    ) as http:
        for path in ("/runs", f"/threads/{uuid.uuid4()}/runs"):
            body = {**body, "if_not_exists": "create"} if path != "/runs" else body
            r = await http.post(path, json=body)
            assert r.status_code < 500, (path, body, r.text[:2000])
