"""Run eval cases through the real graph and score them.

Every case is one user turn, or a conversation of several, on a fresh thread of the service's own
workflow (`open_runtime`: Postgres checkpointer, the configured provider, the FAISS index). When
the graph stops for an approval the runner answers with the turn's next decisions, as a reviewer
would, and resumes.
Each case starts from the initial state of the demo orders it names (their refunds and recorded
rejections are deleted first, unless `reset_orders` is off), so no case depends on another;
cases that name the same order still run one after another, the rest concurrently, up to
`concurrency` at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.runnables import RunnableConfig
from langgraph.types import Command
from pydantic import SecretStr

from core.budget.prices import PRICES
from core.budget.prices import ModelPrice as Price
from core.errors import ConfigError
from core.settings import Settings
from evals.cases import Decision, EvalCase, Turn
from evals.evaluators import (
    AsyncEvaluator,
    Evaluator,
    case_cost,
    deterministic_evaluators,
    evaluate,
)
from evals.results import CaseResult, CaseRun, RunInfo, RunReport, summarize
from graph.builder import DURABILITY
from graph.context import RunContext
from graph.runtime import Runtime

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CORPUS = REPO_ROOT / "data" / "policies"
"""The corpus the datasets' chunk ids refer to."""
REQUESTER = "eval-runner"
"""`user_id` of the turn (who asked)."""
APPROVER = "eval-approver"
"""`user_id` of the resumes (who decided); recorded on approved refunds."""
MAX_CONTENT_CHARS = 4000

ProgressHook = Callable[[CaseResult], None]


@dataclass(kw_only=True)
class EvalOptions:
    """How to run: concurrency, the optional judge, pricing, and bookkeeping."""

    concurrency: int = 4
    provider: str = "openai-compatible"
    judge_model: Any = None
    """A chat model for the LLM judge; None keeps the judge off."""
    prices: dict[str, Price] = field(default_factory=lambda: dict(PRICES))
    datasets: list[str] = field(default_factory=list)
    reset_orders: bool = True
    """Reset the demo orders (delete their refunds and rejections) before the run and each case
    (its own orders), so every case is repeatable and independent of the others."""
    decide: ApprovalDecider | None = None
    """How approvals are decided (the service's decision path, injected by `steward eval`);
    None fails the cases that need one."""


def mock_settings(settings: Settings, base_url: str) -> Settings:
    """Settings pointing the chat model at the mock provider."""
    return settings.model_copy(
        update={"openai_base_url": base_url, "openai_api_key": SecretStr("mock")}
    )


def provider_name(settings: Settings, *, mock: bool) -> str:
    """What the run talks to: `mock`, `openai-compatible` or `demo` (offline scripted model)."""
    if mock:
        return "mock"
    return "openai-compatible" if settings.has_llm_provider else "demo"


def ensure_index(settings: Settings, *, always: bool = False) -> None:
    """Build the knowledge index from `data/policies` when it is missing (or `always`)."""
    if not always and (settings.index_dir / "manifest.json").is_file():
        return
    from core.knowledge.embeddings import make_embedder
    from core.knowledge.ingest import ingest

    log.warning("building the knowledge index from %s into %s", CORPUS, settings.index_dir)
    ingest([CORPUS], settings.index_dir, make_embedder(settings), progress=False)


def plan_lanes(cases: Sequence[EvalCase]) -> list[list[EvalCase]]:
    """Group cases that share an order id (transitively) into lanes that run sequentially."""
    parent: dict[str, str] = {}

    def find(key: str) -> str:
        while parent.setdefault(key, key) != key:
            parent[key] = parent[parent[key]]
            key = parent[key]
        return key

    for case in cases:
        keys = [f"order:{o}" for o in sorted(case.order_ids)] or [f"case:{case.id}"]
        for key in keys[1:]:
            parent[find(key)] = find(keys[0])
    lanes: dict[str, list[EvalCase]] = {}
    for case in cases:
        first = min(case.order_ids) if case.order_ids else None
        root = find(f"order:{first}" if first else f"case:{case.id}")
        lanes.setdefault(root, []).append(case)
    return list(lanes.values())


def resume_decisions(
    requests: Sequence[dict[str, Any]], planned: list[Decision]
) -> list[dict[str, Any]] | None:
    """The resume payload for one interrupt, consuming `planned`; None when it runs out."""
    if len(planned) < len(requests):
        return None
    decisions: list[dict[str, Any]] = []
    for request in requests:
        decision = planned.pop(0)
        if decision.type == "approve":
            decisions.append({"type": "approve", "message": decision.message})
        elif decision.type == "reject":
            decisions.append(
                {"type": "reject", "message": decision.message or "rejected by the eval reviewer"}
            )
        else:
            args = {**dict(request.get("args") or {}), **decision.args}
            decisions.append(
                {
                    "type": "edit",
                    "message": decision.message,
                    "edited_action": {"name": request["name"], "args": args},
                }
            )
    return [{k: v for k, v in d.items() if v is not None} for d in decisions]


def _text(message: BaseMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(
        str(p.get("text", f"<{p.get('type')}>")) if isinstance(p, dict) else str(p) for p in content
    )


def serialize_message(message: BaseMessage) -> dict[str, Any]:
    """A message as the report shows it: type, text, tool calls, usage."""
    out: dict[str, Any] = {"type": message.type, "content": _text(message)[:MAX_CONTENT_CHARS]}
    if message.id and message.type == "human":
        out["id"] = message.id  # the request id its side effects record
    if message.name:
        out["name"] = message.name
    if isinstance(message, AIMessage):
        if message.tool_calls:
            out["tool_calls"] = [{"name": c["name"], "args": c["args"]} for c in message.tool_calls]
        if message.invalid_tool_calls:
            out["invalid_tool_calls"] = [
                {"name": c.get("name"), "args": c.get("args")} for c in message.invalid_tool_calls
            ]
        if message.usage_metadata:
            out["usage"] = dict(message.usage_metadata)
    if isinstance(message, ToolMessage):
        out["tool_call_id"] = message.tool_call_id
        out["status"] = message.status
    return out


def _record_model_reply(run: CaseRun, message: AIMessage) -> None:
    for call in message.tool_calls:
        run.tool_calls.append(
            {"id": call.get("id"), "name": call["name"], "args": call["args"], "invalid": False}
        )
    for bad in message.invalid_tool_calls:
        run.tool_calls.append(
            {"id": bad.get("id"), "name": bad.get("name") or "unknown", "args": {}, "invalid": True}
        )
    usage: dict[str, Any] = dict(message.usage_metadata or {})
    details: dict[str, Any] = dict(usage.get("input_token_details") or {})
    run.model_calls.append(
        {
            "model": str(message.response_metadata.get("model_name") or ""),
            "input_tokens": int(usage.get("input_tokens") or 0),
            "output_tokens": int(usage.get("output_tokens") or 0),
            "cached_tokens": int(details.get("cache_read") or 0),
        }
    )


async def _stream(
    runtime: Runtime, payload: Any, config: RunnableConfig, context: RunContext, run: CaseRun
) -> None:
    """Run the graph until it ends or interrupts, recording nodes and model replies."""
    async for chunk in runtime.graph.astream(
        payload, config, context=context, stream_mode="updates", durability=DURABILITY
    ):
        for node, update in chunk.items():
            if node == "__interrupt__":
                continue
            run.nodes.append(node)
            if node != "agent" or not isinstance(update, dict):
                continue
            for message in update.get("messages") or []:
                if isinstance(message, AIMessage):
                    _record_model_reply(run, message)


async def _refunds_of(runtime: Runtime, thread_id: str) -> list[dict[str, Any]]:
    from core.domain.orders import format_money

    async with runtime.pool.connection() as conn:
        rows = await (
            await conn.execute(
                "SELECT r.refund_id, r.order_id, r.amount_cents, r.requested_by, r.approved_by,"
                " r.request_id,"
                " o.status AS order_status, a.status AS approval_status, a.decided_by"
                " FROM refunds r JOIN orders o USING (order_id)"
                " LEFT JOIN approvals a ON a.approval_id = r.approval_id"
                " WHERE r.thread_id = %s ORDER BY r.created_at, r.refund_id",
                (thread_id,),
            )
        ).fetchall()
    return [
        {
            "refund_id": str(r["refund_id"]),
            "order_id": r["order_id"],
            "amount": format_money(r["amount_cents"]),
            "requested_by": r["requested_by"],
            "request_id": r["request_id"],
            "approved_by": r["approved_by"],
            "order_status": r["order_status"],
            "approval_status": r["approval_status"],
            "decided_by": r["decided_by"],
        }
        for r in rows
    ]


EVAL_TENANT = "evals"
"""Tenant of the eval threads and of the eval approver."""


class ApprovalDecider(Protocol):
    """Records an approver's decisions on a thread's pending approval; returns the resume.

    The service's decision path (`server.decisions`) implements it; the composition root
    (`steward eval`) injects it, so the evals never import the service.
    """

    async def __call__(
        self,
        runtime: Runtime,
        *,
        thread_id: uuid.UUID,
        approver: str,
        tenant: str,
        requester: str,
        decisions: list[dict[str, Any]],
    ) -> Any:
        """Record `decisions` by `approver` on the thread's pending approval."""
        ...


async def _decide(
    runtime: Runtime,
    decide: ApprovalDecider | None,
    thread_id: str,
    decisions: list[dict[str, Any]],
) -> Any:
    """Record the case's decisions as an approver, through the injected decision path."""
    if decide is None:
        raise ConfigError("this case needs approvals: EvalOptions.decide is not set")
    return await decide(
        runtime,
        thread_id=uuid.UUID(thread_id),
        approver=APPROVER,
        tenant=EVAL_TENANT,
        requester=REQUESTER,
        decisions=decisions,
    )


async def run_case(
    runtime: Runtime,
    case: EvalCase,
    *,
    run_id: str,
    decide: ApprovalDecider | None = None,
) -> CaseRun:
    """Drive one case's turns through the graph on one thread, answering approvals as it says."""
    thread_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"steward-eval:{run_id}:{case.id}"))
    run = CaseRun(
        case_id=case.id,
        thread_id=thread_id,
        approval_threshold=float(runtime.deps.approval_threshold),
    )
    config = _config(thread_id, REQUESTER, run_id, case.id)
    try:
        for turn in case.conversation:
            config = _config(thread_id, REQUESTER, run_id, case.id)
            await _run_turn(runtime, turn, config, run, decide)
            if run.pending_approval:
                break
            response = (await runtime.graph.aget_state(config)).values.get("response")
            if isinstance(response, dict):
                run.responses.append(response)
    except Exception as exc:  # noqa: BLE001 - a failing case is a result, not a crash
        run.error = f"{type(exc).__name__}: {exc}"
        log.warning("eval case %s failed: %s", case.id, run.error)
    try:
        values = (await runtime.graph.aget_state(config)).values
        run.response = None if run.pending_approval or run.error else values.get("response")
        run.retrieved = [c["id"] for c in values.get("retrieved") or []]
        run.messages = [serialize_message(m) for m in values.get("messages") or []]
        run.refunds = await _refunds_of(runtime, thread_id)
    except Exception as exc:  # noqa: BLE001 - keep whatever was observed
        run.error = run.error or f"{type(exc).__name__}: {exc}"
    return run


def _config(thread_id: str, user_id: str, run_id: str, case_id: str) -> RunnableConfig:
    return {
        "configurable": {"thread_id": thread_id, "user_id": user_id},
        "metadata": {"eval_run": run_id, "eval_case": case_id},
    }


async def _run_turn(
    runtime: Runtime,
    turn: Turn,
    config: RunnableConfig,
    run: CaseRun,
    decide: ApprovalDecider | None,
) -> None:
    """One user message, then a resume per approval interrupt while the turn's decisions last."""
    thread_id = str(config["configurable"]["thread_id"])
    context = RunContext(user_id=REQUESTER)
    payload: Any = {"messages": [{"role": "user", "content": turn.input}]}
    planned = list(turn.approvals)
    while True:
        started = time.perf_counter()
        try:
            await _stream(runtime, payload, config, context, run)
        finally:
            run.latency_s += time.perf_counter() - started
        state = await runtime.graph.aget_state(config)
        if not state.interrupts:
            return
        requests = list(state.interrupts[0].value.get("action_requests") or [])
        run.approvals_requested.append(requests)
        decisions = resume_decisions(requests, planned)
        if decisions is None:
            run.pending_approval = True
            return
        run.decisions.extend(decisions)
        config = {**config, "configurable": {"thread_id": thread_id, "user_id": APPROVER}}
        context = RunContext(user_id=APPROVER)
        payload = Command(resume=await _decide(runtime, decide, thread_id, decisions))


async def score_case(
    case: EvalCase,
    run: CaseRun,
    evaluators: Sequence[Evaluator],
    judges: Sequence[AsyncEvaluator],
    prices: dict[str, Price],
) -> CaseResult:
    """Evaluate one run into a CaseResult."""
    scores = await evaluate(case, run, evaluators, judges)
    applicable = [s for s in scores.values() if s.passed is not None]
    return CaseResult(
        case_id=case.id,
        dataset=case.dataset,
        category=case.category,
        input=case.input_text,
        passed=run.error is None and all(s.passed for s in applicable),
        error=run.error,
        scores=scores,
        latency_s=round(run.latency_s, 4),
        cost_usd=case_cost(run, prices),
        input_tokens=sum(int(c.get("input_tokens") or 0) for c in run.model_calls),
        output_tokens=sum(int(c.get("output_tokens") or 0) for c in run.model_calls),
        trace=run,
    )


async def run_suite(
    runtime: Runtime,
    cases: Sequence[EvalCase],
    options: EvalOptions,
    *,
    on_result: ProgressHook | None = None,
) -> RunReport:
    """Run and score every case; return the full report (traces included)."""
    from core.domain.seed import reset_demo_orders, seed_demo_orders

    run_id = uuid.uuid4().hex[:12]
    started_at = datetime.now(UTC)
    if options.reset_orders:
        await seed_demo_orders(runtime.pool, reset=True)
    warmup = getattr(runtime.deps.retriever, "warmup", None)
    if callable(warmup):  # load the embedding model now, not inside the first cases' latency
        await warmup()
    clock = time.perf_counter()
    evaluators = deterministic_evaluators(options.prices)
    judges: list[AsyncEvaluator] = []
    if options.judge_model is not None:
        from evals.evaluators import make_judge

        judges.append(make_judge(options.judge_model))
    gate = asyncio.Semaphore(max(1, options.concurrency))
    results: dict[str, CaseResult] = {}

    async def run_lane(lane: list[EvalCase]) -> None:
        for case in lane:
            async with gate:
                if options.reset_orders:  # each case starts from its orders' initial state
                    await reset_demo_orders(runtime.pool, case.order_ids)
                run = await run_case(runtime, case, run_id=run_id, decide=options.decide)
            result = await score_case(case, run, evaluators, judges, options.prices)
            results[case.id] = result
            if on_result is not None:
                on_result(result)

    await asyncio.gather(*(run_lane(lane) for lane in plan_lanes(cases)))
    ordered = [results[c.id] for c in cases]
    settings = runtime.deps.settings
    info = RunInfo(
        run_id=run_id,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        wall_s=round(time.perf_counter() - clock, 3),
        provider=options.provider,
        model=settings.model,
        datasets=options.datasets or sorted({c.dataset for c in cases}),
        concurrency=options.concurrency,
        judge=bool(judges),
        config={
            "approval_threshold": str(settings.refund_approval_threshold),
            "retrieval_k": settings.retrieval_k,
            "max_model_calls": settings.max_model_calls,
            "max_tool_calls": settings.max_tool_calls,
            "max_repairs": settings.max_repairs,
            "embeddings": settings.embeddings,
        },
    )
    return RunReport(run=info, summary=summarize(ordered), cases=ordered)


@contextmanager
def quiet_logs(level: int = logging.ERROR) -> Iterator[None]:
    """Silence the graph's per-call logging while a progress bar is drawn."""
    root = logging.getLogger()
    before = root.level
    root.setLevel(level)
    try:
        yield
    finally:
        root.setLevel(before)
