"""SDK parity: every `langgraph-sdk` call against `steward serve` and `langgraph dev`, one table.

The same sequence of client calls runs against both servers, serving langgraph.json's `agent`
graph on one mock model (300 ms per call, so runs are still running when the cancel and
multitask calls arrive). For each call the table gives both servers' outcome: the HTTP status
(or the SDK's error), the top-level keys of the answer and, for streams, the event names.
`same` means status and shape agree; differences in shape are listed (`+` only Steward sends
the key, `-` only the reference does).

Steward needs identities: the calls run as a `user` key; resumes and "mark as resolved" run as
an `approver` of the same tenant, assistant writes as its `admin` (the reference has no roles).
When the JS suite's packages are installed (`make js-deps`), `bench/sdk_parity.mjs` runs the
same calls with `@langchain/langgraph-sdk` and its table is added.

Usage: python bench/sdk_parity.py [--out bench/results/sdk_parity.md]
Needs Postgres (STEWARD_BENCH_PG, default postgresql://root@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from langgraph_sdk import get_client
from langgraph_sdk.client import LangGraphClient
from scratch_db import scratch_database  # bench/ is on sys.path when run as a script
from servers import ROOT, Server, base_env, create_key, running_server

from mock_llm.process import running_mock_llm

QUESTION: Any = {"messages": [{"role": "user", "content": "How long is the return window?"}]}
BIG_REFUND: Any = {"messages": [{"role": "user", "content": "Refund $600 on LS-10017 please."}]}
MODES = (
    "values",
    "updates",
    "messages-tuple",
    "messages",
    "events",
    "debug",
    "checkpoints",
    "custom",
    "tasks",
)
MOCK_LATENCY_MS = 300
JS_PROBE = ROOT / "bench" / "sdk_parity.mjs"
JS_MODULES = ROOT / "tests" / "js" / "node_modules"


@dataclass
class Clients:
    """The clients one server's calls use: a user's, an approver's, an admin's; raw HTTP."""

    user: LangGraphClient
    approver: LangGraphClient
    admin: LangGraphClient
    base_url: str
    user_headers: dict[str, str]
    approver_headers: dict[str, str]


@dataclass
class Exact:
    """A probe's result compared as it is (event names, a hand-made summary)."""

    value: Any


def shape(value: Any) -> Any:
    """What a result looks like: keys of a dict, length and element shape of a list."""
    if isinstance(value, Exact):
        return value.value
    if isinstance(value, dict):
        return sorted(value)
    if isinstance(value, list):
        return {"len": len(value), "item": shape(value[0]) if value else None}
    return type(value).__name__


def outcome_of_error(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, httpx.HTTPStatusError):
        detail = exc.response.text[:120].replace("\n", " ")
        return {"status": exc.response.status_code, "detail": detail}
    return {"status": type(exc).__name__, "detail": str(exc)[:120]}


async def events_of(parts: AsyncIterator[Any], limit_s: float = 60.0) -> Exact:
    """The sorted distinct event names of a stream (namespaces dropped)."""
    names: set[str] = set()

    async def collect() -> None:
        async for part in parts:
            names.add(part.event.split("|")[0])

    try:
        await asyncio.wait_for(collect(), limit_s)
    except TimeoutError:
        return Exact({"events": sorted(names), "ended": False})  # still open when cut
    return Exact(sorted(names))


async def raw(
    c: Clients, method: str, path: str, body: Any = None, *, approver: bool = False
) -> Any:
    """One HTTP call with the SDK's headers; raises for an error status like the SDK does."""
    headers = c.approver_headers if approver else c.user_headers
    async with httpx.AsyncClient(base_url=c.base_url, headers=headers, timeout=60) as http:
        response = await http.request(method, path, json=body)
        response.raise_for_status()
        if "text/event-stream" in response.headers.get("content-type", ""):
            names = {
                line.removeprefix("event:").strip().split("|")[0]
                for line in response.text.splitlines()
                if line.startswith("event:")
            }
            return Exact(sorted(names))
        return response.json() if response.content else None


async def finished_run(c: Clients) -> tuple[str, str]:
    tid = (await c.user.threads.create())["thread_id"]
    run = await c.user.runs.create(tid, "agent", input=QUESTION)
    await c.user.runs.join(tid, run["run_id"])
    return tid, run["run_id"]


async def held_refund(c: Clients) -> str:
    """A thread whose $600 refund waits for a decision."""
    tid = (await c.user.threads.create())["thread_id"]
    await c.user.runs.wait(tid, "agent", input=BIG_REFUND)
    return tid


def submit_body(state: dict[str, Any], command: dict[str, Any]) -> dict[str, Any]:
    """What agent-chat-ui's `thread.submit({}, {command})` posts."""
    return {
        "input": {},
        "command": command,
        "stream_mode": ["messages-tuple", "values", "custom"],
        "stream_subgraphs": True,
        "on_disconnect": "cancel",
        "checkpoint": state["checkpoint"],
        "assistant_id": "agent",
    }


Probe = Callable[[Clients, dict[str, Any]], Awaitable[Any]]


def probes() -> list[tuple[str, Probe]]:
    """The calls, in order; `scratch` carries ids from one call to the next."""

    async def create_thread(c: Clients, s: dict[str, Any]) -> Any:
        thread = await c.user.threads.create(metadata={"parity": "yes"})
        s["tid"] = thread["thread_id"]
        return thread

    async def wait(c: Clients, s: dict[str, Any]) -> Any:
        return await c.user.runs.wait(s["tid"], "agent", input=QUESTION)

    async def create_and_join(c: Clients, s: dict[str, Any]) -> Any:
        run = await c.user.runs.create(s["tid"], "agent", input=QUESTION)
        s["rid"] = run["run_id"]
        await c.user.runs.join(s["tid"], run["run_id"])
        return run

    def stream_mode(mode: str) -> Probe:
        async def probe(c: Clients, s: dict[str, Any]) -> Any:
            tid = (await c.user.threads.create())["thread_id"]
            return await events_of(
                c.user.runs.stream(tid, "agent", input=QUESTION, stream_mode=mode)  # type: ignore[arg-type]
            )

        return probe

    async def join_stream(c: Clients, s: dict[str, Any]) -> Any:
        tid = (await c.user.threads.create())["thread_id"]
        run = await c.user.runs.create(tid, "agent", input=QUESTION, stream_mode=["values"])
        return await events_of(c.user.runs.join_stream(tid, run["run_id"]))

    async def thread_join_stream(c: Clients, s: dict[str, Any]) -> Any:
        tid = (await c.user.threads.create())["thread_id"]
        await c.user.runs.create(tid, "agent", input=QUESTION, stream_mode=["values"])
        stream: Any = c.user.threads.join_stream(tid)
        if asyncio.iscoroutine(stream):  # 0.4.x: a coroutine that returns the iterator
            stream = await stream
        return await events_of(stream, limit_s=15)

    async def cancel_finished(c: Clients, s: dict[str, Any]) -> Any:
        tid, rid = await finished_run(c)
        return await c.user.runs.cancel(tid, rid)

    async def cancel_interrupt(c: Clients, s: dict[str, Any]) -> Any:
        tid = (await c.user.threads.create())["thread_id"]
        run = await c.user.runs.create(tid, "agent", input=QUESTION)
        for _ in range(100):  # langgraph dev starts a run 0.5-1 s after it is created
            if (await c.user.runs.get(tid, run["run_id"]))["status"] != "pending":
                break
            await asyncio.sleep(0.05)
        await c.user.runs.cancel(tid, run["run_id"], wait=True, action="interrupt")
        return Exact({"thread_status": (await c.user.threads.get(tid))["status"]})

    async def multitask_reject(c: Clients, s: dict[str, Any]) -> Any:
        tid = (await c.user.threads.create())["thread_id"]
        await c.user.runs.create(tid, "agent", input=QUESTION)
        return await c.user.runs.create(tid, "agent", input=QUESTION, multitask_strategy="reject")

    async def delete_busy(c: Clients, s: dict[str, Any]) -> Any:
        tid = (await c.user.threads.create())["thread_id"]
        await c.user.runs.create(tid, "agent", input=QUESTION)
        await c.user.threads.delete(tid)
        try:
            await raw(c, "GET", f"/threads/{tid}")
        except httpx.HTTPStatusError as exc:
            return Exact({"then_get": exc.response.status_code})
        return Exact({"then_get": 200})

    async def interrupt_wait(c: Clients, s: dict[str, Any]) -> Any:
        tid = (await c.user.threads.create())["thread_id"]
        out: Any = await c.user.runs.wait(tid, "agent", input=BIG_REFUND)
        s["held"] = tid
        state = await c.user.threads.get_state(tid)
        thread = await c.user.threads.get(tid)
        [(_, by_task)] = thread["interrupts"].items()
        return Exact(
            {
                "wait": shape(out["__interrupt__"][0]),
                "state": shape(state["interrupts"][0]),
                "thread": shape(by_task[0]),
            }
        )

    async def resume_as_chat_ui(c: Clients, s: dict[str, Any]) -> Any:
        state = await c.approver.threads.get_state(s["held"])
        body = submit_body(dict(state), {"resume": {"decisions": [{"type": "approve"}]}})
        return await raw(c, "POST", f"/threads/{s['held']}/runs/stream", body, approver=True)

    async def mark_as_resolved(c: Clients, s: dict[str, Any]) -> Any:
        tid = await held_refund(c)
        state = await c.approver.threads.get_state(tid)
        body = submit_body(dict(state), {"goto": "__end__"})
        await raw(c, "POST", f"/threads/{tid}/runs/stream", body, approver=True)
        after = await c.user.threads.get_state(tid)
        return Exact({"next": after["next"], "interrupts": len(after["interrupts"])})

    async def create_assistant(c: Clients, s: dict[str, Any]) -> Any:
        assistant = await c.admin.assistants.create(
            graph_id="agent", config={"configurable": {"tone": "brief"}}, name="parity"
        )
        s["aid"] = assistant["assistant_id"]
        return assistant

    async def need_assistant(c: Clients, s: dict[str, Any]) -> str:
        if "aid" not in s:
            raise RuntimeError("no assistant was created")
        return str(s["aid"])

    async def update_assistant(c: Clients, s: dict[str, Any]) -> Any:
        return await c.admin.assistants.update(await need_assistant(c, s), metadata={"v": 2})

    async def assistant_versions(c: Clients, s: dict[str, Any]) -> Any:
        return await c.user.assistants.get_versions(await need_assistant(c, s))

    async def set_latest(c: Clients, s: dict[str, Any]) -> Any:
        return await c.admin.assistants.set_latest(await need_assistant(c, s), 1)

    async def run_with_assistant(c: Clients, s: dict[str, Any]) -> Any:
        tid = (await c.user.threads.create())["thread_id"]
        return await c.user.runs.wait(tid, await need_assistant(c, s), input=QUESTION)

    async def delete_assistant(c: Clients, s: dict[str, Any]) -> Any:
        return await c.admin.assistants.delete(await need_assistant(c, s))

    async def system_assistant(c: Clients, s: dict[str, Any]) -> Any:
        [system] = await c.user.assistants.search(metadata={"created_by": "system"})
        s["system"] = system["assistant_id"]
        return system

    return [
        ("assistants.search(system)", system_assistant),
        ("assistants.get", lambda c, s: c.user.assistants.get(s["system"])),
        ("assistants.get_graph", lambda c, s: c.user.assistants.get_graph(s["system"])),
        ("assistants.get_schemas", lambda c, s: c.user.assistants.get_schemas(s["system"])),
        ("assistants.get_subgraphs", lambda c, s: c.user.assistants.get_subgraphs(s["system"])),
        ("assistants.count", lambda c, s: c.user.assistants.count(graph_id="agent")),
        ("assistants.create (admin)", create_assistant),
        ("assistants.update (admin)", update_assistant),
        ("assistants.get_versions", assistant_versions),
        ("assistants.set_latest (admin)", set_latest),
        ("runs.wait(created assistant)", run_with_assistant),
        ("assistants.delete (admin)", delete_assistant),
        ("threads.create", create_thread),
        ("threads.get", lambda c, s: c.user.threads.get(s["tid"])),
        ("threads.update", lambda c, s: c.user.threads.update(s["tid"], metadata={"k": "v"})),
        (
            "threads.search(sort state_updated_at, select)",
            lambda c, s: c.user.threads.search(
                metadata={"parity": "yes"},
                sort_by="state_updated_at",
                select=["thread_id", "status", "state_updated_at"],
            ),
        ),
        ("threads.count", lambda c, s: c.user.threads.count(metadata={"parity": "yes"})),
        ("runs.wait", wait),
        ("runs.create + runs.join", create_and_join),
        ("runs.get", lambda c, s: c.user.runs.get(s["tid"], s["rid"])),
        ("runs.list", lambda c, s: c.user.runs.list(s["tid"])),
        *[(f"runs.stream({m})", stream_mode(m)) for m in MODES],
        ("runs.join_stream", join_stream),
        ("threads.join_stream", thread_join_stream),
        ("threads.get_state", lambda c, s: c.user.threads.get_state(s["tid"])),
        ("threads.get_history (POST)", lambda c, s: c.user.threads.get_history(s["tid"], limit=3)),
        ("GET /threads/{id}/history", lambda c, s: raw(c, "GET", f"/threads/{s['tid']}/history")),
        (
            "threads.update_state",
            lambda c, s: c.user.threads.update_state(s["tid"], {"messages": []}),
        ),
        ("threads.copy", lambda c, s: c.user.threads.copy(s["tid"])),
        ("threads.prune", lambda c, s: c.user.threads.prune([s["tid"]])),
        ("runs.cancel(finished run)", cancel_finished),
        ("runs.cancel(interrupt, once running)", cancel_interrupt),
        ("runs.create(multitask reject, busy)", multitask_reject),
        ("threads.delete(busy)", delete_busy),
        (
            "runs.create_batch",
            lambda c, s: c.user.runs.create_batch([{"assistant_id": "agent", "input": QUESTION}]),
        ),
        ("runs.wait(stateless)", lambda c, s: c.user.runs.wait(None, "agent", input=QUESTION)),
        (
            "runs.stream(stateless)",
            lambda c, s: events_of(c.user.runs.stream(None, "agent", input=QUESTION)),
        ),
        ("interrupt: wait body and state", interrupt_wait),
        ("resume with agent-chat-ui's body", resume_as_chat_ui),
        ("mark as resolved (goto __end__)", mark_as_resolved),
        ("unknown body field", lambda c, s: raw(c, "POST", "/threads", {"from_newer_sdk": 1})),
        ("GET /openapi.json", lambda c, s: raw(c, "GET", "/openapi.json")),
        ("store.put_item", lambda c, s: c.user.store.put_item(["ns"], "k", {"v": 1})),
        (
            "crons.create",
            lambda c, s: c.user.crons.create("agent", schedule="0 * * * *", input=QUESTION),
        ),
    ]


async def run_probes(c: Clients) -> dict[str, dict[str, Any]]:
    scratch: dict[str, Any] = {}
    results: dict[str, dict[str, Any]] = {}
    for name, probe in probes():
        try:
            value = await asyncio.wait_for(probe(c, scratch), 120)
            results[name] = {"status": "ok", "shape": shape(value)}
        except Exception as exc:  # noqa: BLE001 - every failure is a row of the table
            results[name] = outcome_of_error(exc)
        print(f"  {name}: {results[name]}", flush=True)
    return results


def run_js(server: Server, keys: tuple[str, str, str]) -> dict[str, Any]:
    """The JS SDK probe's results (`{call: outcome}`), or {} without node and the packages."""
    node = shutil.which("node")
    if node is None or not JS_MODULES.exists() or not JS_PROBE.exists():
        return {}
    env = {
        **os.environ,
        "PARITY_URL": server.base_url,
        "PARITY_USER_KEY": keys[0],
        "PARITY_APPROVER_KEY": keys[1],
        "PARITY_ADMIN_KEY": keys[2],
        "PARITY_MODULES": str(JS_MODULES),
    }
    out = subprocess.run(
        [node, str(JS_PROBE)], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    if out.returncode != 0:
        print(out.stderr[-2000:])
        return {}
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def cell(result: dict[str, Any] | None) -> str:
    if result is None:
        return "-"
    if result["status"] == "ok":
        return "ok"
    return f"{result['status']}: {result.get('detail', '')[:70]}"


def compare(ours: dict[str, Any] | None, ref: dict[str, Any] | None) -> str:
    if ours is None or ref is None:
        return "-"
    if ours["status"] != ref["status"]:
        return "**differs**"
    if ours.get("shape") == ref.get("shape"):
        return "same"
    a, b = ours.get("shape"), ref.get("shape")
    if isinstance(a, dict) and isinstance(b, dict) and "item" in a and "item" in b:
        a, b = a["item"], b["item"]
    if isinstance(a, list) and isinstance(b, list):
        plus = sorted(set(a) - set(b))
        minus = sorted(set(b) - set(a))
        parts = [f"+{k}" for k in plus] + [f"-{k}" for k in minus]
        return "same status; keys " + " ".join(parts) if parts else "same"
    return f"same status; shape {a} vs {b}"


def table(title: str, steward: dict[str, Any], reference: dict[str, Any]) -> str:
    lines = [
        f"### {title}",
        "",
        "| call | langgraph dev | steward | |",
        "| --- | --- | --- | --- |",
    ]
    for name in dict.fromkeys([*reference, *steward]):
        ours, ref = steward.get(name), reference.get(name)
        lines.append(f"| {name} | {cell(ref)} | {cell(ours)} | {compare(ours, ref)} |")
    return "\n".join(lines)


def seed_orders(env: dict[str, str]) -> None:
    """The demo orders both servers refund from (one database)."""
    subprocess.run(
        [sys.executable, "-m", "steward", "seed"], cwd=ROOT, env=env, check=True, timeout=120
    )


async def probe_server(server: Server, keys: tuple[str, str, str]) -> tuple[dict[str, Any], Any]:
    if server.name != "steward":
        keys = ("", "", "")  # the reference has no identities
    user_h = {"x-api-key": keys[0]} if keys[0] else {}
    appr_h = {"x-api-key": keys[1]} if keys[1] else {}
    clients = Clients(
        user=get_client(url=server.base_url, api_key=keys[0] or None),
        approver=get_client(url=server.base_url, api_key=keys[1] or None),
        admin=get_client(url=server.base_url, api_key=keys[2] or None),
        base_url=server.base_url,
        user_headers=user_h,
        approver_headers=appr_h,
    )
    python = await run_probes(clients)
    js = await asyncio.to_thread(run_js, server, keys)
    return python, js


async def main() -> str:
    """Probe both servers; return the markdown report."""
    async with scratch_database() as db_url:
        with tempfile.TemporaryDirectory(prefix="steward-parity-") as tmp:
            work = Path(tmp)
            home = work / "home"
            home.mkdir()
            from core.knowledge.embeddings import LocalEmbedder
            from core.knowledge.ingest import ingest

            await asyncio.to_thread(
                ingest,
                [ROOT / "data" / "policies"],
                home / "index",
                LocalEmbedder(),
                progress=False,
            )
            results: dict[str, tuple[dict[str, Any], Any]] = {}
            with running_mock_llm(latency_ms=MOCK_LATENCY_MS) as mock:
                env = base_env(db_url, home, mock.base_url)
                user_key = await asyncio.to_thread(create_key, env, "pat", "user", "parity")
                await asyncio.to_thread(seed_orders, env)
                approver_key = await asyncio.to_thread(create_key, env, "mia", "approver", "parity")
                admin_key = await asyncio.to_thread(create_key, env, "ada", "admin", "parity")
                for name in ("steward", "langgraph"):
                    with running_server(name, env, work, user_key, "WARNING", None) as server:
                        print(f"{name} ready in {server.startup_s:.1f}s", flush=True)
                        results[name] = await probe_server(
                            server, (user_key, approver_key, admin_key)
                        )
    (steward_py, steward_js), (ref_py, ref_js) = results["steward"], results["langgraph"]
    report = [table("Python SDK (langgraph-sdk)", steward_py, ref_py)]
    if steward_js and ref_js:
        report.append(table("JS SDK (@langchain/langgraph-sdk)", steward_js, ref_js))
    return "\n\n".join(report)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "sdk_parity.md"))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    args = parser.parse_args()
    started = time.perf_counter()
    text = asyncio.run(main())
    print("\n" + text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
