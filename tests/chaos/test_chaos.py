"""The chaos test (issue 9 item 7): two replicas, kills, a Postgres restart, LLM faults.

CI runs the short version: 40 s of chaos with seed 9 (with the setup, the replicas' restarts
and the checks, 2-3 minutes on a loaded 2-core machine: a replica needs 20-60 s to start).
`make chaos` runs the long one: `STEWARD_CHAOS_DURATION_S` (default 240 there),
`STEWARD_CHAOS_SEED` (empty: a random seed, printed), `STEWARD_CHAOS_CLIENTS` (4).
The harness and the invariants are in tests/chaos/harness.py and invariants.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.chaos.harness import Chaos, ChaosConfig, print_report

pytestmark = pytest.mark.e2e

CONFIG = ChaosConfig.from_env(
    default_duration_s=40.0,
    default_seed=None if os.environ.get("STEWARD_CHAOS_DURATION_S") else 9,
)


@pytest.mark.timeout(int(CONFIG.duration_s + CONFIG.quiesce_s + 400))
async def test_chaos_keeps_every_invariant(steward_home: Path, tmp_path: Path) -> None:
    chaos = Chaos(CONFIG, steward_home, tmp_path)
    summary = await chaos.run()
    print_report(chaos, summary)
    assert summary["kills"] >= 1 and summary["pg_restarts"] >= 1, summary
    assert not chaos.violations, (
        f"{len(chaos.violations)} invariant violation(s) (seed {CONFIG.seed}; replica logs in"
        f" {tmp_path}):\n" + "\n".join(f"- {v}" for v in chaos.violations[:40])
    )
