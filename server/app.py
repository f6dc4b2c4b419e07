"""The Litestar application factory: `create_app(open_runtime, settings=None, **overrides)`.

The lifespan opens the runtime through the injected opener (the composition root passes
`steward.runtime.open_runtime`: pool, migrations, index, graph) into `app.state.runtime`,
builds the key store and threads repository (`app.state.key_store`, `app.state.threads_repo`),
makes sure an API key exists (development: creates one), then
starts the runs worker and the pending-approvals gauge, and stops them on shutdown. While the
process drains (`server.drain`), `/readyz` answers 503 and the worker claims no new runs.
The `STEWARD_BLOCKBUSTER` setting makes any blocking call on the event loop raise (e2e tests).
The approval inbox (`server.inbox`, web pages at `/inbox`) brings its router and templates.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from typing import Any, Protocol

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from core.db.outage import through_outages
from core.errors import StewardError
from core.observability.metrics import approvals_pending_loop
from core.settings import Settings, get_settings
from graph.runtime import Runtime
from server.auth import provide_principal
from server.drain import Drain, DrainMiddleware
from server.edge import EdgeValidationMiddleware
from server.errors import EXCEPTION_HANDLERS, MAX_BODY_BYTES
from server.inbox import INBOX_PATH, inbox_router, inbox_template_config
from server.keys import KeyStore, ensure_dev_key
from server.observability import ObservabilityMiddleware, metrics_endpoint
from server.openapi import DOCS_PATH, docs_assets_router, drop_validation_400, swagger_plugin
from server.rate_limit import rate_limit_config
from server.routes import foundation_routes
from server.routes.deps import (
    provide_key_store,
    provide_run_service,
    provide_runtime,
    provide_settings,
    provide_threads_repo,
)
from server.routes.meta import STEWARD_VERSION
from server.routes.runs import ROUTES as RUNS_ROUTES
from server.routes.usage import ROUTES as USAGE_ROUTES
from server.runs.background import drain_background
from server.runs.service import RunService
from server.runs.worker import RunWorker
from server.threads_repo import ThreadsRepo

logger = logging.getLogger(__name__)


async def _warm_up(runtime: Runtime) -> None:
    """Load lazily-initialised, file-reading pieces now, off the request path.

    psycopg resolves the server's time zone with `zoneinfo` (a file read) on the first
    `timestamptz` it decodes and caches it; doing it here keeps that read off request handling.
    The embedding model (retrieval) and the injection classifier's weights load here too, in a
    worker thread, so the first run does not pay seconds of model loading.
    """
    async with runtime.pool.connection() as conn:
        await (await conn.execute("SELECT now() AS now")).fetchone()
    warmup = getattr(runtime.deps.retriever, "warmup", None)
    if callable(warmup):
        await warmup()
    detector = runtime.deps.injection_detector
    if detector is not None:
        await detector.score("warm-up")


def _activate_blockbuster() -> Any:
    from blockbuster import BlockBuster

    bb = BlockBuster()
    bb.activate()
    logger.info("blockbuster active: blocking calls on the event loop raise")
    return bb


class RuntimeOpener(Protocol):
    """Opens the workflow's runtime for the app's lifetime (`steward.runtime.open_runtime`)."""

    def __call__(
        self, settings: Settings, **overrides: Any
    ) -> AbstractAsyncContextManager[Runtime]:
        """Open the runtime; `overrides` replace single dependencies (tests)."""
        ...


DEV_ORIGINS = r"http://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?"
"""Development's default CORS origins besides Studio: agent-chat-ui and other local pages."""
STUDIO_ORIGINS = ("https://smith.langchain.com", "https://eu.smith.langchain.com")
"""LangGraph Studio's pages (`https://smith.langchain.com/studio/?baseUrl=...`)."""
EXPOSED_HEADERS = ["content-location", "location", "x-pagination-total", "x-pagination-next"]


def cors_config(settings: Settings) -> CORSConfig | None:
    """Return the CORS configuration that `STEWARD_CORS_ORIGINS` asks for.

    Unset: none in production, local pages and Studio in development. None (no CORS headers
    at all) when no origin is allowed.
    """
    origins = settings.cors_origins
    if origins is None and settings.env == "development":
        studio = "|".join(re.escape(origin) for origin in STUDIO_ORIGINS)
        return CORSConfig(
            allow_origins=[],
            allow_origin_regex=f"{DEV_ORIGINS}|{studio}",
            allow_headers=["*"],
            expose_headers=EXPOSED_HEADERS,
        )
    if not origins:
        return None
    return CORSConfig(allow_origins=origins, allow_headers=["*"], expose_headers=EXPOSED_HEADERS)


class StartupErrorReport:
    """ASGI wrapper: a start-up that fails with one of our errors reports one line.

    No API key in production, an unreadable index, ...: one line instead of a traceback.
    """

    def __init__(self, app: Litestar) -> None:
        self.app = app

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        """Pass everything through; shorten a failed start-up's message."""
        app: Any = self.app  # Litestar's ASGI types leave out the lifespan scope
        if scope["type"] != "lifespan":
            await app(scope, receive, send)
            return

        async def send_short(message: dict[str, Any]) -> None:
            error = getattr(self.app.state, "startup_error", None)
            if message["type"] == "lifespan.startup.failed" and error is not None:
                message = {**message, "message": f"start-up failed: {error}"}
            await send(message)

        await app(scope, receive, send_short)


def report_startup_errors(app: Litestar) -> StartupErrorReport:
    """Wrap `app` for uvicorn (`steward serve`): see `StartupErrorReport`."""
    return StartupErrorReport(app)


def create_app(
    open_runtime: RuntimeOpener,
    settings: Settings | None = None,
    *,
    drain: Drain | None = None,
    **runtime_overrides: Any,
) -> Litestar:
    """Build the Steward HTTP app.

    Args:
        open_runtime: opens the runtime (the composition root passes
            `steward.runtime.open_runtime`).
        settings: defaults to the process settings (environment).
        drain: the process's drain state (`steward serve` passes the one its server sets on
            SIGTERM); default: one that never begins.
        **runtime_overrides: passed to `open_runtime` (e.g. `chat_model=` in tests).
    """
    settings = settings or get_settings()
    drain = drain or Drain()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            try:
                runtime = await stack.enter_async_context(
                    open_runtime(settings, **dict(runtime_overrides))
                )
                key_store = KeyStore(runtime.pool)
                wait = settings.db_startup_timeout_s
                await through_outages(
                    lambda: ensure_dev_key(key_store, settings),
                    what="the dev key",
                    timeout_s=wait,
                )
            except StewardError as exc:  # told in one line by `report_startup_errors`
                app.state.startup_error = exc
                raise
            app.state.runtime = runtime
            app.state.key_store = key_store
            app.state.threads_repo = ThreadsRepo(runtime.pool, runtime.checkpointer)
            await through_outages(lambda: _warm_up(runtime), what="warm-up", timeout_s=wait)
            bb = _activate_blockbuster() if settings.blockbuster else None
            worker = RunWorker(runtime, settings)
            await worker.start()
            app.state.worker = worker
            app.state.run_service = RunService(runtime, worker.hub)
            drain.on_begin(worker.stop_claiming)
            gauge = asyncio.create_task(approvals_pending_loop(runtime.pool))
            logger.info("steward service ready (%s)", settings.env)
            try:
                yield
            finally:
                gauge.cancel()
                await drain_background(timeout_s=5.0)
                await worker.stop()
                if bb is not None:
                    bb.deactivate()
                app.state.runtime = None
                app.state.run_service = None

    route_handlers: list[Any] = [
        *foundation_routes(),
        *RUNS_ROUTES,
        *USAGE_ROUTES,
        metrics_endpoint,
        docs_assets_router(),
        inbox_router(),
    ]

    app = Litestar(
        route_handlers=route_handlers,
        lifespan=[lifespan],
        middleware=[
            DefineMiddleware(DrainMiddleware, drain=drain),
            ObservabilityMiddleware(),
            *([limits.middleware] if (limits := rate_limit_config(settings)) else []),
            # NUL, depth, 64-bit ints, malformed JSON: 422 (the inbox's form bodies: NUL only)
            EdgeValidationMiddleware(form_paths=(INBOX_PATH,)),
        ],
        dependencies={
            "principal": Provide(provide_principal),
            "runtime": Provide(provide_runtime, sync_to_thread=False),
            "settings": Provide(provide_settings, sync_to_thread=False),
            "threads_repo": Provide(provide_threads_repo, sync_to_thread=False),
            "run_service": Provide(provide_run_service, sync_to_thread=False),
            "key_store": Provide(provide_key_store, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        template_config=inbox_template_config(),  # the approval inbox's pages (server.inbox)
        request_max_body_size=MAX_BODY_BYTES,
        state=State({"settings": settings, "drain": drain}),
        cors_config=cors_config(settings),
        openapi_config=OpenAPIConfig(
            title="Steward",
            version=STEWARD_VERSION,
            description="LangGraph Server API subset and approval queue of the Steward agent.",
            path=DOCS_PATH,
            # Swagger UI from local files (server.openapi); no other UI (Redoc, Scalar, ...):
            # Litestar's plugins for those load their assets from a CDN.
            render_plugins=[swagger_plugin(), JsonRenderPlugin()],
            components=Components(
                security_schemes={
                    "ApiKey": SecurityScheme(
                        type="apiKey", name="x-api-key", security_scheme_in="header"
                    ),
                }
            ),
            security=[{"ApiKey": []}],
        ),
        logging_config=None,  # core.observability.logging configures logging (CLI start)
        debug=False,
    )
    drop_validation_400(app.openapi_schema)
    return app


__all__ = [
    "DEV_ORIGINS",
    "STUDIO_ORIGINS",
    "RuntimeOpener",
    "StartupErrorReport",
    "cors_config",
    "create_app",
    "report_startup_errors",
]
