"""Runtime dependencies of the nodes, injected into `make_graph` (never module globals)."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, field
from decimal import Decimal

from langchain_core.language_models import BaseChatModel

from core.budget.ledger import UsageLedger
from core.domain.types import OrderStore
from core.guardrails.policy_rules import RiskRule, parse_rules
from core.guardrails.semantic import SemanticDetector
from core.knowledge.embeddings import LOCAL_MODEL_NAME, CachedEmbedder, Embedder, LocalEmbedder
from core.knowledge.retriever import FaissRetriever
from core.knowledge.types import Retriever
from core.settings import Settings, get_settings
from graph.context import RunContext
from graph.tools import DEFAULT_ALLOWED_TOOLS, RISK_RULES, ROLE_TOOLS

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
    injection_detector: SemanticDetector | None = None
    """input_filter's semantic injection layer; default: the shipped classifier on the
    retriever's (cached) embedder when that is the model it was trained on, else on a
    process-wide local one. None when `STEWARD_GUARD_INJECTION(_SEMANTIC)` is off."""

    def __post_init__(self) -> None:
        if self.injection_detector is None and semantic_screening_on(self.settings):
            self.injection_detector = default_injection_detector(self.retriever, self.settings)
        if not self.risk_rules:
            self.risk_rules = (*RISK_RULES, *parse_rules(self.settings.tool_rules))
        if self.routine_chat_model is None:
            self.routine_chat_model = routine_model_of(self.chat_model, self.settings)

    @property
    def approval_threshold(self) -> Decimal:
        """Refunds above this amount need a person's decision."""
        return self.settings.refund_approval_threshold

    def role_of(self, context: RunContext) -> str:
        """The caller's role from the run's context, else `STEWARD_DEFAULT_ROLE`."""
        return context.role or self.settings.default_role

    def tools_for(self, role: str) -> tuple[str, ...]:
        """Tools a caller with `role` may use here (none for unknown roles).

        The assistant's allowlist intersected with the role's permissions
        (`STEWARD_ROLE_TOOLS`, else graph.tools.ROLE_TOOLS).
        """
        table = self.settings.role_tools or ROLE_TOOLS
        permitted = set(table.get(role, ()))
        return tuple(name for name in self.allowed_tools if name in permitted)


def semantic_screening_on(settings: Settings) -> bool:
    """Whether input_filter runs the semantic injection layer."""
    return settings.guard_injection and settings.guard_injection_semantic


@functools.cache
def _local_query_embedder() -> CachedEmbedder:
    """One lazily loaded all-MiniLM-L6-v2 per process, for retrievers that do not use it."""
    return CachedEmbedder(LocalEmbedder())


def default_injection_detector(retriever: Retriever, settings: Settings) -> SemanticDetector:
    """The shipped classifier, sharing the retriever's embedder (and its cache) when it can."""
    embedder: Embedder = _local_query_embedder()
    if isinstance(retriever, FaissRetriever) and retriever.embedder.name == LOCAL_MODEL_NAME:
        embedder = retriever.embedder
    return SemanticDetector(embedder, threshold=settings.injection_semantic_threshold)


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
