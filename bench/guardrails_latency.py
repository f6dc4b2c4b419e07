"""Guardrail cost: input_filter and validate latency per message against a whole run's, and the
detection / false-positive rates of the injection rules on the case tables.

In-process, same run:
  input_filter   the node on every message of tests/data/guardrail_*.jsonl plus PII-bearing
                 support messages (size check, injection rules, Presidio PII redaction, routing)
  validate       the node on final answers built from policy text (schema, citations, PII
                 redaction, refund-claim check)
  run            whole turns of the real workflow: FAISS, ChatOpenAI over HTTP to the mock
                 (0 ms latency, so this is the smallest realistic run), Postgres checkpointer
                 and usage ledger; a policy question and a refund under the threshold

Usage: python bench/guardrails_latency.py [--rounds 5] [--runs 100]
Needs Postgres for the run part (STEWARD_BENCH_PG, default postgresql://root@127.0.0.1:5432/
postgres); `--no-run` skips it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.runnables import RunnableConfig
from latency_stats import p50_p99_ms  # bench/ is on sys.path when run as a script

from core.guardrails.injection import detect_injection
from core.guardrails.pii import get_analyzer
from core.settings import Settings
from graph.builder import DURABILITY
from graph.deps import Deps
from nodes.input_filter import make_input_filter
from nodes.validate import make_validate

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
PII_MESSAGES = [
    "Hi, it's Ava (ava.thompson@gmail.com, +1 415 555 0132). Where is LS-10001?",
    "I paid with 4111 1111 1111 1111, can the refund for LS-10007 go back to that card?",
    "Refund to IBAN DE89 3704 0044 0532 0130 00 please, order LS-10013 arrived broken.",
    "My SSN is 536-22-8145 if you need to verify me. Is my warranty still valid?",
    "Our integration key sk-proj-Zx8AbCdEfGhIjKlMnOpQrStUv stopped working, can you help?",
]


async def timed(call: Callable[[], Awaitable[Any]], rounds: int) -> list[float]:
    out: list[float] = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def cases(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line]


def rates(name: str) -> dict[str, float]:
    table = cases(name)
    attacks = [c for c in table if c["label"] == "attack"]
    benign = [c for c in table if c["label"] == "benign"]
    caught = sum(detect_injection(c["text"]).blocked() for c in attacks)
    flagged = sum(detect_injection(c["text"]).blocked() for c in benign)
    return {
        "attacks": len(attacks),
        "benign": len(benign),
        "detection_rate": caught / len(attacks),
        "false_positive_rate": flagged / len(benign),
    }


def answers() -> list[tuple[str, list[dict[str, Any]]]]:
    """Final answers like the mock's: a policy lead sentence, some with PII or refund claims."""
    out: list[tuple[str, list[dict[str, Any]]]] = []
    for path in sorted((ROOT / "data" / "policies").glob("*.md")):
        text = " ".join(path.read_text().split())[:600]
        chunk = {
            "id": f"{path.stem}#1",
            "title": path.stem,
            "text": text,
            "source": path.name,
            "score": 1.0,
        }
        out.append((f"According to our {path.stem}: {text[:300]}", [chunk]))
        out.append((f"I've refunded $120.00 on order LS-10007. {text[:120]}", [chunk]))
        out.append((f"Contact ava.thompson@gmail.com about {path.stem}.", [chunk]))
    return out


async def node_latency(rounds: int) -> dict[str, Any]:
    settings = Settings()
    deps = Deps(
        chat_model=None,  # type: ignore[arg-type]
        retriever=None,  # type: ignore[arg-type]
        orders=None,  # type: ignore[arg-type]
        settings=settings,
    )
    await asyncio.to_thread(get_analyzer)
    input_filter, validate = make_input_filter(deps), make_validate(deps)
    texts = [c["text"] for c in cases("guardrail_cases.jsonl") + cases("guardrail_holdout.jsonl")]
    texts += PII_MESSAGES * 4
    filter_ms: list[float] = []
    for i in range(rounds):
        for text in texts:
            # A new suffix per round defeats the redaction cache: every message is scanned.
            state: dict[str, Any] = {"messages": [HumanMessage(f"{text} (#{i})", id="m")]}
            filter_ms += await timed(lambda s=state: input_filter(s), 1)  # type: ignore[misc]
    validate_ms: list[float] = []
    for i in range(rounds):
        for answer, chunks in answers():
            message = AIMessage(
                json.dumps({"answer": f"{answer} (#{i})", "sources": [chunks[0]["id"]]})
            )
            state = {"messages": [HumanMessage("q"), message], "retrieved": chunks, "actions": []}
            validate_ms += await timed(lambda s=state: validate(s), 1)  # type: ignore[misc]
    return {"input_filter": p50_p99_ms(filter_ms), "validate": p50_p99_ms(validate_ms)}


async def run_latency(runs: int) -> dict[str, Any]:
    import psycopg

    from core.knowledge.embeddings import LocalEmbedder
    from core.knowledge.ingest import ingest
    from mock_llm.process import running_mock_llm
    from steward.runtime import open_runtime

    admin_url = os.environ.get("STEWARD_BENCH_PG", "postgresql://root@127.0.0.1:5432/postgres")
    db_name = f"steward_bench_{uuid.uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
        await admin.execute(f'CREATE DATABASE "{db_name}"')
    db_url = f"{admin_url.rsplit('/', 1)[0]}/{db_name}"
    results: dict[str, Any] = {}
    estimate_error: dict[str, Any] = {}
    try:
        with tempfile.TemporaryDirectory() as home, running_mock_llm() as mock:
            ingest(
                [ROOT / "data" / "policies"], Path(home) / "index", LocalEmbedder(), progress=False
            )
            settings = Settings(  # type: ignore[call-arg]
                STEWARD_HOME=home,
                DATABASE_URL=db_url,
                OPENAI_BASE_URL=mock.base_url,
                OPENAI_API_KEY="bench",
                STEWARD_BUDGET_USER_DAY_USD="",
                STEWARD_BUDGET_THREAD_USD="",
            )
            async with open_runtime(settings) as runtime:
                from core.domain.seed import seed_demo_orders

                await seed_demo_orders(runtime.pool, reset=True)
                for name, text in (
                    ("policy_question", "How long is the return window?"),
                    ("refund_1usd", "Please refund $1 on order LS-10007, torn."),
                ):

                    async def turn(text: str = text) -> None:
                        cfg: RunnableConfig = {
                            "configurable": {
                                "thread_id": str(uuid.uuid4()),
                                "user_id": "bench",
                                "tenant_id": "bench",
                            }
                        }
                        out = await runtime.graph.ainvoke(
                            {"messages": [{"role": "user", "content": text}]},
                            cfg,
                            durability=DURABILITY,
                        )
                        assert out["response"]["refusal"] is None

                    await timed(turn, 5)
                    results[name] = p50_p99_ms(await timed(turn, runs))
                async with runtime.pool.connection() as conn:
                    row = await (
                        await conn.execute(
                            "SELECT count(*) AS calls,"
                            " max(abs(estimated_input_tokens - input_tokens)"
                            "::float / input_tokens) AS max_err, avg(abs(estimated_input_tokens -"
                            " input_tokens)::float / input_tokens) AS mean_err FROM usage_ledger"
                            " WHERE status = 'settled'"
                        )
                    ).fetchone()
                estimate_error = dict(row) if row else {}
    finally:
        async with await psycopg.AsyncConnection.connect(admin_url, autocommit=True) as admin:
            await admin.execute(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)')
    return {"latency": results, "estimate_error": estimate_error}


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)
    report: dict[str, Any] = {
        "rates": {
            "table": rates("guardrail_cases.jsonl"),
            "holdout": rates("guardrail_holdout.jsonl"),
        },
        "nodes": await node_latency(args.rounds),
    }
    if not args.no_run:
        measured = await run_latency(args.runs)
        report["runs"], report["estimate_error"] = measured["latency"], measured["estimate_error"]
    for name, r in report["rates"].items():
        print(
            f"{name:<8} attacks {r['attacks']:>4}  benign {r['benign']:>4}  "
            f"detection {r['detection_rate']:.3f}  false positives "
            f"{r['false_positive_rate']:.3f}"
        )
    print(f"\n{'stage':<16} {'p50 ms':>8} {'p99 ms':>8} {'n':>6}")
    for name, r in {**report["nodes"], **report.get("runs", {})}.items():
        print(f"{name:<16} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['n']:>6}")
    if "runs" in report:
        guards = report["nodes"]["input_filter"]["p50_ms"] + report["nodes"]["validate"]["p50_ms"]
        for name, r in report["runs"].items():
            print(
                f"guardrails (p50 input_filter + validate) / {name} p50: {guards / r['p50_ms']:.1%}"
            )
    if report.get("estimate_error"):
        err = report["estimate_error"]
        print(
            f"token estimate vs provider usage over {err['calls']} calls: mean error "
            f"{err['mean_err']:.2%}, max {err['max_err']:.2%}"
        )
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"guardrails_latency-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"\nraw results: {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--no-run", action="store_true")
    asyncio.run(main(parser.parse_args()))
