"""The OpenAPI document and the Swagger UI docs, served by the real `steward serve`.

- `/openapi.json` and `/docs/openapi.json` serve the same document; no operation documents
  Litestar's `400` (the app answers validation errors with 422) and every error response has
  the `{"detail": ...}` body.
- `/docs` works offline: its HTML names no URL on another host, every asset it references
  answers 200 from the server itself, and no CDN-backed UI (Redoc, Scalar, ...) is served.
- Every operation documents 401 exactly when a request without a key answers 401.
"""

from __future__ import annotations

import re
import uuid
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

if TYPE_CHECKING:
    from tests.fixtures_server import RunningServer

pytest_plugins = ["tests.fixtures_server"]
pytestmark = pytest.mark.e2e

METHODS = ("get", "put", "post", "delete", "patch")
ABSOLUTE_URL = re.compile(r"""(?:https?:)?//[^\s"'<>)]+""")


class _References(HTMLParser):
    """Collect the URLs a page loads or links to (`src`, `href`)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls.extend(v for k, v in attrs if k in ("src", "href") and v)


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in METHODS
    ]


@pytest.fixture(scope="module", name="spec")
def fx_spec(server: RunningServer) -> dict[str, Any]:
    spec: dict[str, Any] = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    return spec


def test_openapi_document_is_served_at_both_paths(server: RunningServer) -> None:
    root = httpx.get(f"{server.url}/openapi.json", timeout=10)
    docs = httpx.get(f"{server.url}/docs/openapi.json", timeout=10)
    assert root.status_code == docs.status_code == 200
    assert root.headers["content-type"].startswith("application/json")
    assert root.json() == docs.json()
    assert root.json()["openapi"].startswith("3.1.")


def test_error_responses_are_documented_with_the_error_body(spec: dict[str, Any]) -> None:
    operations = _operations(spec)
    assert len(operations) > 40
    for method, path, op in operations:
        label = f"{method.upper()} {path}"
        responses = op["responses"]
        assert "400" not in responses, label
        assert "422" in responses, label  # server.edge refuses NUL in any path or query
        errors = {code: r for code, r in responses.items() if int(code) >= 400}
        for code, response in errors.items():
            schema = response["content"]["application/json"]["schema"]
            assert schema == {"$ref": "#/components/schemas/ErrorBody"}, (label, code)
    assert spec["components"]["schemas"]["ErrorBody"]["required"] == ["detail"]


def test_every_operation_documents_401_exactly_when_it_needs_a_key(
    server: RunningServer, spec: dict[str, Any]
) -> None:
    wrong = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for method, path, op in _operations(spec):
            url = re.sub(r"\{[^}]+\}", lambda _: str(uuid.uuid4()), path)
            status = http.request(method.upper(), url).status_code
            documented = "401" in op["responses"]
            if (status == 401) != documented:
                wrong.append(f"{method.upper()} {path}: {status}, 401 documented: {documented}")
    assert wrong == []


def test_docs_page_loads_only_local_assets(server: RunningServer) -> None:
    page = httpx.get(f"{server.url}/docs", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert "SwaggerUIBundle(" in html
    host = urlsplit(server.url).netloc
    foreign = [u for u in ABSOLUTE_URL.findall(html) if urlsplit(u).netloc != host]
    assert foreign == [], "the docs page names other hosts"

    parser = _References()
    parser.feed(html)
    assets = [u for u in parser.urls if not u.startswith("#")]
    assert {a.rsplit("/", 1)[-1] for a in assets} >= {
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-ui.css",
        "favicon-32x32.png",
    }
    with httpx.Client(timeout=10) as http:
        for asset in assets:
            url = urljoin(f"{server.url}/docs", asset)
            assert urlsplit(url).netloc == host, asset
            r = http.get(url)
            assert r.status_code == 200, (asset, r.status_code)
            assert int(r.headers["content-length"]) > 0, asset


@pytest.mark.parametrize("ui", ["redoc", "scalar", "rapidoc", "elements", "swagger"])
def test_no_cdn_backed_docs_ui_is_served(server: RunningServer, ui: str) -> None:
    assert httpx.get(f"{server.url}/docs/{ui}", timeout=10).status_code == 404
