"""Runtime dependencies of the nodes, injected into `make_graph` (never module globals)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from langchain_core.language_models import BaseChatModel

from graph.errors import ConfigError
from graph.tools import DEFAULT_ALLOWED_TOOLS, RISK_RULES, ROLE_TOOLS
from steward.budget.ledger import UsageLedger
from steward.domain.types import OrderStore, OrderView, RefundRequest, RefundResult
from steward.guardrails.policy_rules import RiskRule, parse_rules
from steward.knowledge.types import RetrievedChunk, Retriever
from steward.settings import Settings, get_settings

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Deps:
    """Everything the nodes need from the outside world."""

    chat_model: BaseChatModel
    retriever: Retriever
    orders: OrderStore
    settings: Settings = field(default_factory=get_settings)
    allowed_tools: tuple[str, ...] = DEFAULT_ALLOWED_TOOLS
    """Tools this assistant may use; anything else is denied by guard_tools."""
    routine_chat_model: BaseChatModel | None = None
    """The cheap model for routine turns; default: `chat_model` re-pointed at
    `STEWARD_ROUTINE_MODEL` (the same model when both names are equal or it cannot be)."""
    usage_ledger: UsageLedger | None = None
    """Budgets and the usage ledger; default: Postgres on the order store's pool (none when
    the order store is not Postgres, e.g. in unit tests: then nothing is metered)."""
    risk_rules: tuple[RiskRule, ...] = ()
    """Tool risk rules; default graph.tools.RISK_RULES plus `STEWARD_TOOL_RULES`."""

    def __post_init__(self) -> None:
        if not self.risk_rules:
            self.risk_rules = (*RISK_RULES, *parse_rules(self.settings.tool_rules))
        if self.routine_chat_model is None:
            self.routine_chat_model = routine_model_of(self.chat_model, self.settings)

    @property
    def approval_threshold(self) -> Decimal:
        """Refunds above this amount need a person's decision."""
        return self.settings.refund_approval_threshold

    def role_of(self, configurable: dict[str, Any]) -> str:
        """The caller's role from `configurable.role`, else `STEWARD_DEFAULT_ROLE`."""
        role = configurable.get("role")
        return str(role) if role else self.settings.default_role

    def tools_for(self, role: str) -> tuple[str, ...]:
        """Tools a caller with `role` may use here (none for unknown roles).

        The assistant's allowlist intersected with the role's permissions
        (`STEWARD_ROLE_TOOLS`, else graph.tools.ROLE_TOOLS).
        """
        table = self.settings.role_tools or ROLE_TOOLS
        permitted = set(table.get(role, ()))
        return tuple(name for name in self.allowed_tools if name in permitted)


def make_chat_model(settings: Settings, *, model: str | None = None) -> BaseChatModel:
    """Return ChatOpenAI for any OpenAI-compatible provider, or the offline demo model.

    Production refuses to run without a provider; development falls back loudly.
    """
    if settings.has_llm_provider:
        from langchain_openai import ChatOpenAI

        key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "unset"
        return ChatOpenAI(
            model=model or settings.model,
            base_url=settings.openai_base_url,
            api_key=key,  # type: ignore[arg-type]  # langchain-openai accepts str or SecretStr
            stream_usage=True,
            max_retries=0,  # the graph's node retry policy owns retries
            timeout=settings.llm_timeout_s,
            max_completion_tokens=settings.llm_max_tokens,
            use_responses_api=False,
        )
    if settings.env == "production":
        raise ConfigError("STEWARD_ENV=production needs OPENAI_API_KEY or OPENAI_BASE_URL")
    from steward.mock_llm.demo_model import DemoChatModel

    log.warning(
        "No OPENAI_API_KEY or OPENAI_BASE_URL set: using the OFFLINE DEMO MODEL "
        "(scripted replies, not a real LLM)."
    )
    return DemoChatModel()


def routine_model_of(chat_model: BaseChatModel, settings: Settings) -> BaseChatModel:
    """Return `chat_model` pointed at `settings.routine_model` (same client and limits)."""
    if settings.routine_model == settings.model:
        return chat_model
    from langchain_openai import ChatOpenAI

    if isinstance(chat_model, ChatOpenAI) and chat_model.model_name == settings.model:
        return chat_model.model_copy(update={"model_name": settings.routine_model})
    return chat_model


def model_name_of(chat_model: BaseChatModel, settings: Settings) -> str:
    """The model name a chat model requests (for prices and the usage ledger)."""
    name = getattr(chat_model, "model_name", None) or getattr(chat_model, "model", None)
    return str(name) if name else settings.model


class LazyRetriever:
    """Loads the FAISS index on first use, so importing the graph touches no files."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._inner: Retriever | None = None
        self._lock = asyncio.Lock()

    async def search(self, query: str, *, k: int) -> list[RetrievedChunk]:
        """Search the index, loading it (off the event loop) the first time."""
        if self._inner is None:
            async with self._lock:
                if self._inner is None:
                    from steward.knowledge.retriever import load_retriever

                    self._inner = await asyncio.to_thread(load_retriever, self._settings)
        return await self._inner.search(query, k=k)


class LazyOrderStore:
    """Opens a pool on first use; for `langgraph dev`, where no server lifespan exists."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._inner: OrderStore | None = None
        self._pool: AsyncConnectionPool[Any] | None = None
        self._lock = asyncio.Lock()

    async def _store(self) -> OrderStore:
        if self._inner is None:
            async with self._lock:
                if self._inner is None:
                    from steward.db.embedded import resolve_database_url
                    from steward.db.migrate import migrate
                    from steward.db.pool import create_pool
                    from steward.domain.orders import PgOrderStore

                    url = await asyncio.to_thread(resolve_database_url, self._settings)
                    pool = create_pool(url, self._settings)
                    await pool.open(wait=True)
                    await migrate(pool, url)
                    store = PgOrderStore(pool)
                    await store.set_approval_threshold(self._settings.refund_approval_threshold)
                    self._pool = pool
                    self._inner = store
        return self._inner

    async def get_order(self, order_id: str) -> OrderView | None:
        """Delegate to the Postgres store."""
        return await (await self._store()).get_order(order_id)

    async def issue_refund(self, request: RefundRequest) -> RefundResult:
        """Delegate to the Postgres store."""
        return await (await self._store()).issue_refund(request)


def default_deps(settings: Settings | None = None) -> Deps:
    """Build lazily-initialised dependencies from settings (used by `langgraph dev`)."""
    settings = settings or get_settings()
    return Deps(
        chat_model=make_chat_model(settings),
        retriever=LazyRetriever(settings),
        orders=LazyOrderStore(settings),
        settings=settings,
    )
