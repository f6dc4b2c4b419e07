"""Refund path latency over HTTP: refund turns against a policy-question turn, same run.

One `steward serve` (development, its own index and demo orders in a fresh STEWARD_HOME)
against a scratch database and the mock LLM (0 ms latency); a `user` and an `approver` key of
one tenant. Measured one at a time (no concurrency), interleaved a, b, c per iteration, after
warm-up iterations that are not counted:

  a  baseline        POST /threads + POST /threads/{id}/runs/wait "What is the return window?"
                     (OK: 200 with a response that has sources)
  b  refund <= limit POST /threads + runs/wait "Refund $40 on LS-10002 please."
                     (OK: one action `issue_refund` with status `executed`)
  c  refund > limit  POST /threads + runs/wait "Refund $700 on LS-10007 please." -> __interrupt__
                     (issue_refund); the approver finds the approval (GET /approvals
                     ?status=pending, this thread), POSTs /approvals/{id}/decision
                     {"type": "approve"}; the user GETs /threads/{id}/runs/{run_id}/join of the
                     resume run (OK: the action is `executed`). Reported as the whole turn
                     (c total) and its parts: up to the interrupt, the approval look-up, and
                     approval-to-done (decision POST + join).

Between iterations (not timed) `DELETE FROM refunds` on the scratch database, so the orders'
refundable balances never run out; after each refund turn the refund row is checked there.
Prints p50/p99 (nearest rank) per measure and each one's ratio to the baseline's p50.

Usage: python bench/refund_path.py [--runs 40] [--warmup 3]
Run from a checkout with that checkout first on the path (the server subprocess runs
`python -m steward serve` with cwd and PYTHONPATH set to this checkout):
  cd CHECKOUT && PYTHONPATH=$PWD .venv/bin/python bench/refund_path.py
Needs Postgres (STEWARD_BENCH_PG, default postgresql://root@127.0.0.1:5432/postgres).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from latency_stats import percentile
from scratch_db import scratch_database
from servers import stop_process  # bench/ is on sys.path when run as a script

from mock_llm.process import free_port, running_mock_llm

ROOT = Path(__file__).resolve().parents[1]
TENANT = "bench-refund"
USER = "bench-user"
APPROVER = "bench-approver"
QUESTION = "What is the return window?"
SMALL_REFUND = ("Refund $40 on LS-10002 please.", "LS-10002", 4000)
LARGE_REFUND = ("Refund $700 on LS-10007 please.", "LS-10007", 70000)
REQUEST_TIMEOUT_S = 60.0
ITERATION_TIMEOUT_S = 120.0
STARTUP_TIMEOUT_S = 240.0
APPROVAL_LOOKUP_S = 10.0
APPROVAL_POLL_S = 0.01
MEASURES = (
    "a baseline",
    "b refund<=limit",
    "c total",
    "c to interrupt",
    "c approval lookup",
    "c approval->done",
)


class IterationError(Exception):
    """One iteration failed; `kind` is counted, the message kept as a sample."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


# --------------------------------------------------------------------------- processes


def child_env(db_url: str, home: Path, mock_url: str) -> dict[str, str]:
    """Environment of every subprocess: this checkout first on the path, no stray settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("LANGSMITH_", "LANGCHAIN_", "LANGGRAPH_", "OPENAI_", "STEWARD_"))
    }
    path = [str(ROOT), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env.update(
        {
            "PYTHONPATH": os.pathsep.join(dict.fromkeys(path)),
            "PYTHONUNBUFFERED": "1",
            "DATABASE_URL": db_url,
            "STEWARD_HOME": str(home),
            "STEWARD_ENV": "development",
            "OPENAI_BASE_URL": mock_url,
            "OPENAI_API_KEY": "bench",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "STEWARD_LOG_LEVEL": "WARNING",
            "STEWARD_RATE_LIMIT_PER_MINUTE": "0",
            "STEWARD_BUDGET_USER_DAY_USD": "100000",
            "STEWARD_BUDGET_TENANT_MONTH_USD": "100000",
            "STEWARD_BUDGET_THREAD_USD": "100000",
            "LANGSMITH_TRACING": "false",
            "LANGCHAIN_TRACING_V2": "false",
        }
    )
    return env


def run_python(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    """`python ARGS` in this checkout; return its stdout (raise with its output)."""
    out = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(
            f"python {' '.join(args)} exited {out.returncode}:\n"
            f"{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
        )
    return out.stdout


def run_cli(env: dict[str, str], *args: str) -> str:
    """`python -m steward ARGS` in this checkout; return its stdout."""
    return run_python(env, "-m", "steward", *args)


def code_under_test(env: dict[str, str]) -> str:
    """Where the subprocesses import `steward` and `server` from (printed as a check)."""
    out = run_python(
        env,
        "-c",
        "import server, steward; print(steward.__file__, server.__file__)",
        timeout=60,
    )
    return out.strip()


def tail(log: Path, lines: int = 40) -> str:
    if not log.exists():
        return ""
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    last = "no answer yet"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"steward serve exited with {process.returncode}:\n{tail(log)}")
        try:
            answer = httpx.get(url, timeout=2.0)
            if answer.status_code == 200:
                return
            last = f"{answer.status_code} {answer.text[:200]}"
        except httpx.TransportError as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise RuntimeError(
        f"{url} not ready within {STARTUP_TIMEOUT_S:.0f} s (last: {last}):\n{tail(log)}"
    )


@contextlib.contextmanager
def running_server(env: dict[str, str], log: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`python -m steward serve` on a free port (cwd: this checkout); stopped on exit."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "steward",
                "serve",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(f"{base_url}/readyz", process, log)
        yield base_url, process
    finally:
        stop_process(process)


# --------------------------------------------------------------------------- turns


def run_body(text: str) -> dict[str, Any]:
    return {"assistant_id": "agent", "input": {"messages": [{"role": "user", "content": text}]}}


async def ok_json(response: httpx.Response, step: str) -> Any:
    if response.status_code != 200:
        raise IterationError(f"{step}_{response.status_code}", response.text[:300])
    try:
        return response.json()
    except ValueError as exc:
        raise IterationError(f"{step}_bad_json", str(exc)[:300]) from None


def brief(data: Any) -> str:
    return json.dumps(data, default=str)[:300]


def run_failure(data: Any, step: str) -> IterationError:
    if isinstance(data, dict) and "__error__" in data:
        return IterationError(f"{step}_run_error", brief(data["__error__"]))
    if isinstance(data, dict) and "__interrupt__" in data:
        return IterationError(f"{step}_interrupted", brief(data["__interrupt__"]))
    return IterationError(f"{step}_unexpected", brief(data))


def executed_refund(data: Any, step: str) -> None:
    """The final values must report exactly one executed issue_refund."""
    response = data.get("response") if isinstance(data, dict) else None
    actions = response.get("actions") if isinstance(response, dict) else None
    if (
        isinstance(actions, list)
        and len(actions) == 1
        and isinstance(actions[0], dict)
        and actions[0].get("status") == "executed"
    ):
        return
    raise run_failure(data, step)


@dataclass
class Bench:
    http: httpx.AsyncClient
    user: dict[str, str]
    approver: dict[str, str]
    db_url: str

    async def new_thread(self) -> str:
        data = await ok_json(
            await self.http.post("/threads", json={}, headers=self.user), "threads"
        )
        return str(data["thread_id"])

    async def wait(self, thread_id: str, text: str) -> Any:
        return await ok_json(
            await self.http.post(
                f"/threads/{thread_id}/runs/wait", json=run_body(text), headers=self.user
            ),
            "wait",
        )

    async def baseline(self) -> dict[str, float]:
        t0 = time.perf_counter()
        data = await self.wait(await self.new_thread(), QUESTION)
        elapsed = time.perf_counter() - t0
        response = data.get("response") if isinstance(data, dict) else None
        if not (isinstance(response, dict) and response.get("sources")):
            raise run_failure(data, "baseline")
        return {"a baseline": elapsed}

    async def small_refund(self) -> dict[str, float]:
        t0 = time.perf_counter()
        data = await self.wait(await self.new_thread(), SMALL_REFUND[0])
        elapsed = time.perf_counter() - t0
        executed_refund(data, "small")
        await self.check_refund(SMALL_REFUND[1], SMALL_REFUND[2], approved_by=None)
        return {"b refund<=limit": elapsed}

    async def pending_approval(self, thread_id: str) -> str:
        deadline = time.monotonic() + APPROVAL_LOOKUP_S
        while time.monotonic() < deadline:
            listed = await ok_json(
                await self.http.get(
                    "/approvals", params={"status": "pending"}, headers=self.approver
                ),
                "approvals",
            )
            mine = [a for a in listed if a.get("thread_id") == thread_id]
            if len(mine) == 1:
                return str(mine[0]["approval_id"])
            if mine:
                raise IterationError("approvals_many", brief(mine))
            await asyncio.sleep(APPROVAL_POLL_S)
        raise IterationError(
            "approval_missing", f"none pending for {thread_id} after {APPROVAL_LOOKUP_S:.0f} s"
        )

    async def large_refund(self) -> dict[str, float]:
        t0 = time.perf_counter()
        thread_id = await self.new_thread()
        data = await self.wait(thread_id, LARGE_REFUND[0])
        t_interrupt = time.perf_counter()
        try:
            name = data["__interrupt__"][0]["value"]["action_requests"][0]["name"]
        except (KeyError, IndexError, TypeError):
            raise run_failure(data, "large") from None
        if name != "issue_refund":
            raise IterationError("large_interrupt_tool", brief(data["__interrupt__"]))
        approval_id = await self.pending_approval(thread_id)
        t_found = time.perf_counter()
        decided = await ok_json(
            await self.http.post(
                f"/approvals/{approval_id}/decision",
                json={"type": "approve"},
                headers=self.approver,
            ),
            "decision",
        )
        try:
            run_id = str(decided["run"]["run_id"])
        except (KeyError, TypeError):
            raise IterationError("decision_no_run", brief(decided)) from None
        final = await ok_json(
            await self.http.get(f"/threads/{thread_id}/runs/{run_id}/join", headers=self.user),
            "join",
        )
        t_done = time.perf_counter()
        executed_refund(final, "join")
        await self.check_refund(LARGE_REFUND[1], LARGE_REFUND[2], approved_by=APPROVER)
        return {
            "c total": t_done - t0,
            "c to interrupt": t_interrupt - t0,
            "c approval lookup": t_found - t_interrupt,
            "c approval->done": t_done - t_found,
        }

    async def check_refund(self, order_id: str, cents: int, approved_by: str | None) -> None:
        async with await psycopg.AsyncConnection.connect(self.db_url) as conn:
            cur = await conn.execute("SELECT order_id, amount_cents, approved_by FROM refunds")
            rows = await cur.fetchall()
        if rows != [(order_id, cents, approved_by)]:
            raise IterationError("refund_row", f"refunds table: {rows}")

    async def reset_refunds(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.db_url, autocommit=True) as conn:
            await conn.execute("DELETE FROM refunds")


@dataclass
class Tally:
    samples: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in MEASURES})
    errors: Counter[str] = field(default_factory=Counter)
    error_samples: list[str] = field(default_factory=list)
    skipped: int = 0


async def measure(turn: Callable[[], Awaitable[dict[str, float]]], tally: Tally | None) -> None:
    try:
        async with asyncio.timeout(ITERATION_TIMEOUT_S):
            parts = await turn()
    except IterationError as exc:
        kind, detail = exc.kind, str(exc)
    except TimeoutError:
        kind, detail = "timeout", f"turn exceeded {ITERATION_TIMEOUT_S:.0f} s"
    except httpx.HTTPError as exc:
        kind, detail = f"http_{type(exc).__name__}", str(exc)[:300]
    else:
        if tally is not None:
            for name, seconds in parts.items():
                tally.samples[name].append(seconds * 1000)
        return
    print(f"  error {kind}: {detail[:300]}", flush=True)
    if tally is not None:
        tally.errors[kind] += 1
        if len(tally.error_samples) < 5:
            tally.error_samples.append(detail[:300])


# --------------------------------------------------------------------------- report


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def report(tally: Tally, runs: int) -> None:
    base = percentile(tally.samples["a baseline"], 50)
    print(
        f"\n{'measure':<18} {'n':>4} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9} "
        f"{'p50/base':>9} {'p99/base':>9}"
    )
    for name in MEASURES:
        values = tally.samples[name]
        p50, p99 = percentile(values, 50), percentile(values, 99)
        mean = sum(values) / len(values) if values else None
        r50 = p50 / base if p50 is not None and base else None
        r99 = p99 / base if p99 is not None and base else None
        print(
            f"{name:<18} {len(values):>4} {fmt(p50):>9} {fmt(p99):>9} {fmt(mean):>9} "
            f"{fmt(r50, '.2f'):>9} {fmt(r99, '.2f'):>9}"
        )
    print(
        f"\nruns planned {runs}; ratios are against the baseline p50 of this run "
        f"({fmt(base)} ms); p99 of <100 samples is the maximum"
    )
    if tally.errors or tally.skipped:
        print(f"errors {dict(tally.errors)}; iterations not started (budget) {tally.skipped}")
        for sample in tally.error_samples:
            print(f"  {sample}")


# --------------------------------------------------------------------------- main


async def bench(args: argparse.Namespace) -> Tally:
    tally = Tally()
    async with scratch_database() as db_url:
        with tempfile.TemporaryDirectory(prefix="steward-refund-path-") as tmp:
            work = Path(tmp)
            home = work / "home"
            with running_mock_llm(latency_ms=0) as mock:
                env = child_env(db_url, home, mock.base_url)
                print(
                    f"code under test: {await asyncio.to_thread(code_under_test, env)}", flush=True
                )
                t0 = time.perf_counter()
                await asyncio.to_thread(run_cli, env, "seed")  # migrates, loads LS-10001...
                keys = [
                    (
                        await asyncio.to_thread(
                            run_cli,
                            env,
                            "keys",
                            "create",
                            "--user",
                            user,
                            "--role",
                            role,
                            "--tenant",
                            TENANT,
                        )
                    )
                    .strip()
                    .splitlines()[-1]
                    .strip()
                    for user, role in ((USER, "user"), (APPROVER, "approver"))
                ]
                log = work / "server.log"
                with running_server(env, log) as (base_url, process):
                    print(
                        f"seeded, keys made, server ready (index built by it) in "
                        f"{time.perf_counter() - t0:.1f}s",
                        flush=True,
                    )
                    await run_iterations(args, tally, base_url, keys, db_url)
                    if process.poll() is not None:
                        print(f"server exited early:\n{tail(log)}")
                    noisy = [
                        line
                        for line in log.read_text(errors="replace").splitlines()
                        if "Traceback" in line or "Error" in line
                    ]
                    if noisy:
                        print(f"server log: {len(noisy)} error line(s), first: {noisy[:3]}")
    return tally


async def run_iterations(
    args: argparse.Namespace, tally: Tally, base_url: str, keys: list[str], db_url: str
) -> None:
    limits = httpx.Limits(max_connections=4, max_keepalive_connections=4)
    async with httpx.AsyncClient(
        base_url=base_url, timeout=REQUEST_TIMEOUT_S, limits=limits
    ) as http:
        b = Bench(http, {"x-api-key": keys[0]}, {"x-api-key": keys[1]}, db_url)
        await b.reset_refunds()
        deadline = time.monotonic() + args.budget_s
        turns = (b.baseline, b.small_refund, b.large_refund)
        for i in range(args.warmup + args.runs):
            if time.monotonic() > deadline:
                tally.skipped = args.warmup + args.runs - i
                print(f"--budget-s reached: {tally.skipped} iteration(s) not started")
                break
            counted = tally if i >= args.warmup else None
            for turn in turns:
                await measure(turn, counted)
                await b.reset_refunds()
            if (i + 1) % 10 == 0 or i + 1 == args.warmup:
                print(f"  {i + 1}/{args.warmup + args.runs} iterations", flush=True)


def interrupt_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM unwinds like Ctrl-C, so the servers are stopped and the database dropped."""
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40, help="measured iterations")
    parser.add_argument("--warmup", type=int, default=3, help="iterations not counted")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=900.0,
        help="no iteration starts later than this after the server is ready",
    )
    args = parser.parse_args()
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be >= 1 and --warmup >= 0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    signal.signal(signal.SIGTERM, interrupt_on_sigterm)
    started = time.perf_counter()
    try:
        tally = asyncio.run(bench(args))
    except KeyboardInterrupt:
        print("interrupted: subprocesses stopped, scratch database dropped", file=sys.stderr)
        sys.exit(130)
    report(tally, args.runs)
    print(f"total {time.perf_counter() - started:.0f}s")


if __name__ == "__main__":
    main()
