"""A local receiver for trace exporters (OTLP/HTTP protobuf and LangSmith), and its decoders.

`capturing()` runs a tiny HTTP server on 127.0.0.1 that records every POST (gunzipped) and
answers 200: point `OTEL_EXPORTER_OTLP_ENDPOINT` and `LANGSMITH_ENDPOINT` at its `url`.
`otlp_spans` decodes `/v1/traces` bodies (`ExportTraceServiceRequest`); `langsmith_runs` merges
LangSmith's `/runs/multipart` and `/runs/batch` bodies into one dict per run id.
"""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


@dataclass
class Capture:
    """What the receiver got: (path, headers, body) per request, in arrival order."""

    url: str
    requests: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, path: str) -> list[tuple[dict[str, str], bytes]]:
        """Headers and body of every request to `path` (query string ignored)."""
        with self.lock:
            return [(h, b) for p, h, b in self.requests if p.split("?")[0] == path]


@contextmanager
def capturing() -> Iterator[Capture]:
    """Run the receiver for the duration of the block."""
    capture = Capture(url="")

    class Handler(BaseHTTPRequestHandler):
        def _reply(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            self._reply(b"{}", "application/json")  # LangSmith's /info: no special flags

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            if self.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            with capture.lock:
                capture.requests.append((self.path, dict(self.headers.items()), body))
            if self.path.startswith("/v1/traces"):
                self._reply(b"", "application/x-protobuf")
            else:
                self._reply(b"{}", "application/json")

        do_PATCH = do_POST

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    capture.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield capture
    finally:
        server.shutdown()
        server.server_close()


def otlp_spans(capture: Capture, path: str = "/v1/traces") -> tuple[list[Any], dict[str, Any]]:
    """Every span received over OTLP/HTTP at `path`, and the resource attributes they came with."""
    spans: list[Any] = []
    resource: dict[str, Any] = {}
    for headers, body in capture.bodies(path):
        assert headers.get("Content-Type", headers.get("content-type")) == "application/x-protobuf"
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for attribute in resource_spans.resource.attributes:
                resource[attribute.key] = attribute.value.string_value
            for scope_spans in resource_spans.scope_spans:
                spans.extend(scope_spans.spans)
    return spans, resource


def attrs(span: Any) -> dict[str, Any]:
    """A decoded span's (or link's) attributes as a plain dict."""
    out: dict[str, Any] = {}
    for attribute in span.attributes:
        value = attribute.value
        kind = value.WhichOneof("value")
        out[attribute.key] = getattr(value, kind) if kind else None
    return out


def langsmith_runs(capture: Capture) -> tuple[dict[str, dict[str, Any]], bytes]:
    """Merge LangSmith multipart (and batch) bodies into one dict per run id; also the raw bytes."""
    runs: dict[str, dict[str, Any]] = {}
    raw = b""
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    for headers, body in capture.bodies("/runs/multipart"):
        raw += body
        content_type = headers.get("Content-Type") or headers.get("content-type")
        message = parser.parsebytes(f"Content-Type: {content_type}\r\n\r\n".encode() + body)
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            op, _, rest = str(name).partition(".")
            run_id, _, sub = rest.partition(".")
            run = runs.setdefault(run_id, {})
            data = json.loads(payload)  # type: ignore[arg-type]  # bytes when decode=True
            if sub:
                run[sub] = data
            else:
                run.update(data)
    for _, body in capture.bodies("/runs/batch"):
        raw += body
        batch = json.loads(body)
        for op in ("post", "patch"):
            for item in batch.get(op) or []:
                runs.setdefault(str(item["id"]), {}).update(item)
    return runs, raw
