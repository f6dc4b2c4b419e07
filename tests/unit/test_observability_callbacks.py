"""RunObserver on the real graph (offline demo model, in-memory stores and checkpointer)."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.callbacks import AsyncCallbackManager
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatResult
from langchain_core.runnables import RunnableConfig
from langchain_core.tracers.langchain import LangChainTracer
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.types import Command
from langsmith import Client
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from core.domain.types import OrderView, RefundRequest, RefundResult
from core.knowledge.types import RetrievedChunk
from core.observability import langsmith as ls_module
from core.observability import metrics as m
from core.observability import tracing
from core.observability.langsmith import langsmith_config, langsmith_tracer
from core.observability.logging import configure_logging, reset_logging
from core.settings import Settings
from graph.builder import make_graph
from graph.context import RunContext
from graph.deps import Deps
from graph.observer import (
    RunObserver,
    describe_input,
    instrument_run_config,
    tool_label,
)
from mock_llm.demo_model import DemoChatModel
from nodes.guard_tools import denial_reason_code

MODEL = "steward-demo"


class FakeRetriever:
    async def search(self, query: str, *, k: int) -> list[RetrievedChunk]:
        return [
            RetrievedChunk(
                id="refund-policy#1",
                source="refund-policy.md",
                title="Refunds",
                text="Refunds above 500 USD need a manager's approval.",
                score=0.61,
            ),
            RetrievedChunk(
                id="returns-policy#2",
                source="returns-policy.md",
                title="Returns",
                text="Items can be returned within 30 days.",
                score=0.42,
            ),
        ][:k]


class FakeOrders:
    def __init__(self) -> None:
        self.refunds: list[dict[str, Any]] = []

    async def get_order(self, order_id: str) -> OrderView | None:
        return OrderView(
            order_id=order_id,
            status="delivered",
            currency="USD",
            total="900.00",
            refunded="0.00",
            refundable="900.00",
            placed_at="2026-01-01",
            items=[],
        )

    async def split_reason(self, order_id: str, amount: Any) -> str | None:
        return None

    async def issue_refund(self, request: RefundRequest) -> RefundResult:
        self.refunds.append({"order_id": request.order_id, "amount": request.amount})
        return RefundResult(
            refund_id=f"rf-{len(self.refunds)}",
            order_id=request.order_id,
            amount=str(request.amount),
            currency="USD",
            status="executed",
            replayed=False,
            approved_by="manager",
        )


class BrokenModel(DemoChatModel):
    async def _agenerate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: Any = None,
        **kwargs: Any,
    ) -> ChatResult:
        raise RuntimeError("provider exploded")


def build_graph(tmp_path: Path, model: DemoChatModel | None = None) -> Any:
    settings = Settings(STEWARD_HOME=tmp_path, STEWARD_LLM_MAX_ATTEMPTS=1)  # type: ignore[call-arg]
    deps = Deps(
        chat_model=model or DemoChatModel(),
        retriever=FakeRetriever(),
        orders=FakeOrders(),
        settings=settings,
    )
    return make_graph(InMemorySaver(), deps=deps)


def value(name: str, **labels: str) -> float:
    return m.REGISTRY.get_sample_value(name, labels) or 0.0


class Observed:
    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.spans = InMemorySpanExporter()

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines() if line]

    def events(self, event: str) -> list[dict[str, Any]]:
        return [line for line in self.logs() if line["event"] == event]

    def finished(self) -> list[ReadableSpan]:
        tracing.flush_tracing()
        return list(self.spans.get_finished_spans())


@pytest.fixture(autouse=True)
def _langsmith_env_caches() -> Iterator[None]:
    """langsmith caches environment look-ups; never let this file's variables leak."""
    import langsmith.utils

    # langsmith's overloads hide the lru_cache wrapper's cache_clear.
    langsmith.utils.get_env_var.cache_clear()  # type: ignore[attr-defined]
    yield
    langsmith.utils.get_env_var.cache_clear()  # type: ignore[attr-defined]
    langsmith.utils.get_tracer_project.cache_clear()


@pytest.fixture(name="observed")
def fx_observed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Observed]:
    monkeypatch.delenv("LANGSMITH_TRACING", raising=False)
    monkeypatch.delenv("LANGCHAIN_TRACING_V2", raising=False)
    observed = Observed()
    root = logging.getLogger()
    level = root.level
    configure_logging(fmt="json", level="INFO", stream=observed.stream)
    tracing.configure_tracing(exporter=observed.spans, set_global=False)
    try:
        yield observed
    finally:
        tracing.shutdown_tracing()
        reset_logging()
        root.setLevel(level)


def ask(text: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": text}]}


def config_for(thread: str, user: str = "alice") -> RunnableConfig:
    return {"configurable": {"thread_id": thread, "user_id": user, "tenant_id": "acme"}}


async def test_refund_with_approval_is_logged_measured_and_traced(
    tmp_path: Path, observed: Observed
) -> None:
    graph = build_graph(tmp_path)
    thread = str(uuid.uuid4())
    before = {
        "interrupted": value("steward_runs_total", outcome="interrupted"),
        "success": value("steward_runs_total", outcome="success"),
        "llm": value("steward_llm_calls_total", model=MODEL, status="ok"),
        "tokens_in": value("steward_llm_tokens_total", model=MODEL, kind="input"),
        "tokens_out": value("steward_llm_tokens_total", model=MODEL, kind="output"),
        "unpriced": value("steward_llm_unpriced_calls_total", model=MODEL),
        "executed": value("steward_tool_calls_total", tool="issue_refund", outcome="executed"),
        "requests": value("steward_approval_requests_total", tool="issue_refund"),
        "approve": value("steward_approval_decisions_total", decision="approve"),
        "approval_interrupted": value(
            "steward_node_duration_seconds_count", node="approval", status="interrupted"
        ),
        "agent_ok": value("steward_node_duration_seconds_count", node="agent", status="ok"),
    }

    first = instrument_run_config(config_for(thread), run_id="run-1")
    out = await graph.ainvoke(
        ask("Refund $700 on LS-10007 please."),
        first,
        context=RunContext(user_id="alice", tenant_id="acme"),
    )
    assert "__interrupt__" in out
    second = instrument_run_config(config_for(thread, user="mia"), run_id="run-2")
    out = await graph.ainvoke(
        Command(resume={"decisions": [{"type": "approve"}]}),
        second,
        context=RunContext(user_id="mia", tenant_id="acme"),
    )
    assert out["response"]["actions"][0]["status"] == "executed"

    # metrics
    assert value("steward_runs_total", outcome="interrupted") == before["interrupted"] + 1
    assert value("steward_runs_total", outcome="success") == before["success"] + 1
    assert value("steward_llm_calls_total", model=MODEL, status="ok") == before["llm"] + 2
    assert value("steward_llm_tokens_total", model=MODEL, kind="input") > before["tokens_in"]
    assert value("steward_llm_tokens_total", model=MODEL, kind="output") > before["tokens_out"]
    assert value("steward_llm_unpriced_calls_total", model=MODEL) == before["unpriced"] + 2
    assert (
        value("steward_tool_calls_total", tool="issue_refund", outcome="executed")
        == before["executed"] + 1
    )
    assert value("steward_approval_requests_total", tool="issue_refund") == before["requests"] + 1
    assert value("steward_approval_decisions_total", decision="approve") == before["approve"] + 1
    assert (
        value("steward_node_duration_seconds_count", node="approval", status="interrupted")
        == before["approval_interrupted"] + 1
    )
    assert (
        value("steward_node_duration_seconds_count", node="agent", status="ok")
        == before["agent_ok"] + 2
    )

    # logs: every line of the run carries its ids; the key events are there
    started = observed.events("run started")
    assert [(s["run_id"], s["run_kind"]) for s in started] == [
        ("run-1", "input"),
        ("run-2", "resume"),
    ]
    assert started[0]["input_preview"] == "Refund $700 on LS-10007 please."
    assert started[1]["decisions"] == ["approve"]
    finished = observed.events("run finished")
    assert [f["outcome"] for f in finished] == ["interrupted", "success"]
    assert finished[1]["actions"] == [{"tool": "issue_refund", "status": "executed"}]
    assert finished[0]["llm_calls"] == 1 and finished[0]["input_tokens"] > 0
    [hits] = observed.events("retrieval hits")
    assert [h["id"] for h in hits["hits"]] == ["refund-policy#1", "returns-policy#2"]
    [decided] = observed.events("tool call decided")
    assert (decided["tool"], decided["verdict"]) == ("issue_refund", "approve")
    [requested] = observed.events("approval requested")
    assert requested["tools"] == ["issue_refund"]
    [applied] = observed.events("approval applied")
    assert (applied["decision"], applied["reviewer"]) == ("approve", "mia")
    [executed] = observed.events("tool call executed")
    assert executed["run_id"] == "run-2" and executed["tool"] == "issue_refund"
    llm_lines = observed.events("llm call")
    assert [line["model"] for line in llm_lines] == [MODEL, MODEL]
    assert llm_lines[0]["tool_calls"] == ["issue_refund"]
    for line in observed.logs():
        if line["logger"] in ("steward.run", "nodes.approval", "nodes.run_tools"):
            assert line["thread_id"] == thread and line["tenant_id"] == "acme", line
            assert line["run_id"] in ("run-1", "run-2"), line

    # spans: run -> node -> chat / execute_tool
    spans = observed.finished()
    by_id = {s.context.span_id: s for s in spans}

    def parent_name(span: ReadableSpan) -> str | None:
        return by_id[span.parent.span_id].name if span.parent else None

    runs = [s for s in spans if s.name == "invoke_agent agent"]
    # ReadableSpan.attributes is Optional in OpenTelemetry's types; finished SDK spans have them.
    assert [r.attributes["steward.run_id"] for r in runs] == ["run-1", "run-2"]  # type: ignore[index]
    assert [r.attributes["steward.outcome"] for r in runs] == ["interrupted", "success"]  # type: ignore[index]
    assert all(r.parent is None for r in runs)
    assert runs[0].attributes["gen_ai.conversation.id"] == thread  # type: ignore[index]
    assert runs[1].attributes["enduser.id"] == "mia"  # type: ignore[index]
    names = [s.name for s in spans]
    for node in (
        "input_filter",
        "retrieve",
        "agent",
        "guard_tools",
        "approval",
        "run_tools",
        "validate",
        "finalize",
    ):
        node_spans = [s for s in spans if s.name == f"node {node}"]
        assert node_spans, f"no span for node {node}: {names}"
        assert all(parent_name(s) == "invoke_agent agent" for s in node_spans)
    chats = [s for s in spans if s.name == f"chat {MODEL}"]
    assert len(chats) == 2 and all(parent_name(s) == "node agent" for s in chats)
    assert all(int(str(s.attributes["gen_ai.usage.input_tokens"])) > 0 for s in chats)  # type: ignore[index]
    [tool] = [s for s in spans if s.name == "execute_tool issue_refund"]
    assert parent_name(tool) == "node run_tools"
    assert tool.attributes["steward.tool.status"] == "executed"  # type: ignore[index]
    assert (
        len({s.context.trace_id for s in spans if s.attributes.get("steward.run_id") == "run-1"})  # type: ignore[union-attr]
        == 1
    ), "one trace per run"


async def test_blocked_input_counts_a_guardrail_block_and_a_refused_run(
    tmp_path: Path, observed: Observed
) -> None:
    graph = build_graph(tmp_path)
    blocks = value("steward_guardrail_blocks_total", stage="input", reason="empty_input")
    refused = value("steward_runs_total", outcome="refused")
    out = await graph.ainvoke(ask("   "), instrument_run_config(config_for(str(uuid.uuid4()))))
    assert out["response"]["refusal"] == "empty_input"
    assert (
        value("steward_guardrail_blocks_total", stage="input", reason="empty_input") == blocks + 1
    )
    assert value("steward_runs_total", outcome="refused") == refused + 1
    [blocked] = observed.events("input blocked")
    assert blocked["reason_code"] == "empty_input" and blocked["level"] == "warning"
    [finished] = observed.events("run finished")
    assert finished["outcome"] == "refused" and finished["refusal"] == "empty_input"


async def test_denied_tool_is_a_tool_guardrail_block_with_a_bounded_label(
    tmp_path: Path, observed: Observed
) -> None:
    graph = build_graph(tmp_path)
    blocks = value("steward_guardrail_blocks_total", stage="tool", reason="tool_not_allowed")
    denied = value("steward_tool_calls_total", tool="other", outcome="denied")
    await graph.ainvoke(
        ask("[[mock:tool=drop_tables]] clean up please"),
        instrument_run_config(config_for(str(uuid.uuid4()))),
    )
    assert (
        value("steward_guardrail_blocks_total", stage="tool", reason="tool_not_allowed")
        == blocks + 1
    )
    assert value("steward_tool_calls_total", tool="other", outcome="denied") == denied + 1
    assert (
        m.REGISTRY.get_sample_value(
            "steward_tool_calls_total", {"tool": "drop_tables", "outcome": "denied"}
        )
        is None
    )
    [line] = observed.events("tool call decided")
    assert (line["tool"], line["verdict"]) == ("drop_tables", "deny"), "logs keep the name"
    assert "not available" in line["reason"]


async def test_llm_failure_counts_the_error_type_and_fails_the_run(
    tmp_path: Path, observed: Observed
) -> None:
    graph = build_graph(tmp_path, BrokenModel())
    errors = value("steward_llm_errors_total", model=MODEL, error_type="RuntimeError")
    failed = value("steward_runs_total", outcome="error")
    node_errors = value("steward_node_duration_seconds_count", node="agent", status="error")
    with pytest.raises(RuntimeError):
        await graph.ainvoke(
            ask("Is data encrypted?"),
            instrument_run_config(config_for(str(uuid.uuid4())), run_id="r-x"),
        )
    assert value("steward_llm_errors_total", model=MODEL, error_type="RuntimeError") == errors + 1
    assert value("steward_llm_calls_total", model=MODEL, status="error") >= 1
    assert value("steward_runs_total", outcome="error") == failed + 1
    assert (
        value("steward_node_duration_seconds_count", node="agent", status="error")
        == node_errors + 1
    )
    [llm] = observed.events("llm call failed")
    assert llm["error_type"] == "RuntimeError" and llm["model"] == MODEL
    [run] = observed.events("run failed")
    assert run["error_type"] == "RuntimeError" and run["level"] == "error"
    assert "Traceback" in run["exception"]
    spans = observed.finished()
    [root] = [s for s in spans if s.name == "invoke_agent agent"]
    assert root.status.status_code.name == "ERROR"
    [chat] = [s for s in spans if s.name == f"chat {MODEL}"]
    assert chat.status.status_code.name == "ERROR"


# ---------------------------------------------------------------------- instrument_run_config


def test_instrument_run_config_copies_and_fills_metadata_tags_and_callbacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LANGSMITH_TRACING", raising=False)
    monkeypatch.delenv("LANGCHAIN_TRACING_V2", raising=False)
    original: RunnableConfig = {
        "configurable": {"thread_id": "t-1", "user_id": "u-1", "tenant_id": "acme"},
        "metadata": {"assistant_id": "agent"},
        "tags": ["x"],
        "callbacks": [],
    }
    out = instrument_run_config(original, run_id="r-1", request_id="req-1", bind_log_context=False)
    assert original["metadata"] == {"assistant_id": "agent"} and original["callbacks"] == []
    assert out["metadata"] == {
        "assistant_id": "agent",
        "thread_id": "t-1",
        "run_id": "r-1",
        "tenant_id": "acme",
        "user_id": "u-1",
        "request_id": "req-1",
    }
    assert out["tags"] == ["x", "steward", "tenant:acme"]
    [observer] = out["callbacks"]  # type: ignore[misc]
    assert isinstance(observer, RunObserver)
    assert observer.ids == {
        "run_id": "r-1",
        "thread_id": "t-1",
        "tenant_id": "acme",
        "user_id": "u-1",
        "request_id": "req-1",
    }
    assert "run_id" not in out, "a service run id is not forced on LangChain's root run"


def test_instrument_run_config_generates_a_run_id_and_keeps_a_callback_manager() -> None:
    manager = AsyncCallbackManager(handlers=[])
    out = instrument_run_config({"callbacks": manager}, bind_log_context=False, langsmith=False)
    assert isinstance(out["run_id"], uuid.UUID)
    assert out["metadata"]["run_id"] == str(out["run_id"])
    callbacks = out["callbacks"]
    assert isinstance(callbacks, AsyncCallbackManager) and callbacks is not manager
    assert any(isinstance(h, RunObserver) for h in callbacks.handlers)
    assert manager.handlers == []


def test_langsmith_tracer_only_when_enabled_and_never_twice(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("LANGSMITH_TRACING", raising=False)
    monkeypatch.delenv("LANGCHAIN_TRACING_V2", raising=False)
    assert langsmith_config() is None and langsmith_tracer() is None
    env = {
        "LANGSMITH_TRACING": "true",
        "LANGSMITH_ENDPOINT": "http://127.0.0.1:9",
        "LANGSMITH_API_KEY": "k",
        "LANGSMITH_PROJECT": "steward-test",
    }
    config = langsmith_config(env)
    assert config is not None
    assert (config.endpoint, config.project, config.redact) == (
        "http://127.0.0.1:9",
        "steward-test",
        True,
    )
    assert langsmith_config({**env, "STEWARD_LANGSMITH_REDACT": "false"}).redact is False  # type: ignore[union-attr]
    for name, val in env.items():
        monkeypatch.setenv(name, val)
    # No background sender towards a closed port: an offline client stands in.
    offline = Client(api_url="http://127.0.0.1:9", api_key="k", auto_batch_tracing=False, info={})
    monkeypatch.setattr(ls_module, "langsmith_client", lambda config: offline)
    out = instrument_run_config({}, run_id="r", bind_log_context=False)
    tracers = [h for h in out["callbacks"] if isinstance(h, LangChainTracer)]  # type: ignore[union-attr]
    assert len(tracers) == 1 and tracers[0].project_name == "steward-test"
    again = instrument_run_config(out, run_id="r", bind_log_context=False)
    assert (
        len(
            [
                h
                for h in again["callbacks"]  # type: ignore[union-attr]
                if isinstance(h, LangChainTracer)
            ]
        )
        == 1
    )


# ------------------------------------------------------------------------------ small helpers


def test_denial_reasons_map_to_fixed_codes() -> None:
    assert denial_reason_code("tool 'x' is not available to this assistant") == "tool_not_allowed"
    assert (
        denial_reason_code("invalid arguments for issue_refund: amount: ...") == "invalid_arguments"
    )
    assert denial_reason_code("arguments were not valid JSON; send ...") == "invalid_json"
    assert denial_reason_code("tool call limit reached") == "tool_call_limit"
    assert denial_reason_code("denied by policy") == "policy"
    assert denial_reason_code("something new") == "other"
    assert tool_label("issue_refund") == "issue_refund" and tool_label("rm -rf") == "other"


def test_describe_input_masks_and_truncates_the_preview() -> None:
    kind, summary = describe_input(ask("mail jane@example.com " + "x" * 500))
    assert kind == "input" and summary["input_chars"] == 522
    assert summary["input_preview"].startswith("mail [EMAIL] x")
    assert len(summary["input_preview"]) <= 200
    assert describe_input(None) == ("continue", {})
    assert describe_input(Command(resume={"decisions": [{"type": "reject"}]})) == (
        "resume",
        {"decisions": ["reject"]},
    )
