"""Prometheus registry, recording helpers, pool statistics and LLM pricing."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from core.budget.prices import ModelPrice, price_of, set_model_price
from core.budget.prices import known_cost_usd as cost_usd
from core.observability import metrics as m


def value(name: str, **labels: str) -> float:
    return m.REGISTRY.get_sample_value(name, labels) or 0.0


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_helpers_record_guardrail_blocks_and_approvals() -> None:
    before = value("steward_guardrail_blocks_total", stage="output", reason="pii")
    m.record_guardrail_block("pii", stage="output")
    m.record_guardrail_block("pii", stage="output")
    assert value("steward_guardrail_blocks_total", stage="output", reason="pii") == before + 2

    m.set_approvals_pending(3)
    assert value("steward_approvals_pending") == 3
    m.set_approvals_pending(0)

    count = value("steward_approval_decision_seconds_count", decision="approve")
    m.record_approval_decision("approve", 42.0)
    assert value("steward_approval_decision_seconds_count", decision="approve") == count + 1
    assert value("steward_approval_decision_seconds_bucket", decision="approve", le="60.0") >= 1


def test_render_negotiates_prometheus_text_and_openmetrics() -> None:
    body, content_type = m.render_metrics(None)
    assert content_type.startswith("text/plain; version=0.0.4")
    text = body.decode()
    assert "# TYPE steward_runs_total counter" in text
    assert "steward_node_duration_seconds" in text
    assert "_created" not in text, "no *_created twin series"
    body, content_type = m.render_metrics("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert body.decode().rstrip().endswith("# EOF")


class FakePool:
    def __init__(self, name: str, stats: dict[str, int]) -> None:
        self.name = name
        self.stats = stats

    def get_stats(self) -> dict[str, int]:
        return dict(self.stats)


def test_pool_statistics_are_read_at_scrape_time_and_can_be_removed() -> None:
    pool = FakePool(
        "ckpt-test",
        {
            "pool_min": 2,
            "pool_max": 10,
            "pool_size": 4,
            "pool_available": 1,
            "requests_waiting": 3,
            "requests_num": 7,
            "requests_wait_ms": 1500,
        },
    )
    stop = m.observe_pool(pool)
    try:
        got = samples(m.render_metrics()[0].decode())
        key = (("pool", "ckpt-test"),)
        assert got[("steward_db_pool_pool_size", key)] == 4
        assert got[("steward_db_pool_pool_available", key)] == 1
        assert got[("steward_db_pool_requests_waiting", key)] == 3
        assert got[("steward_db_pool_requests_total", key)] == 7
        assert got[("steward_db_pool_requests_wait_seconds_total", key)] == 1.5
        assert got[("steward_db_pool_connections_lost_total", key)] == 0
        pool.stats["pool_available"] = 4
        assert value("steward_db_pool_pool_available", pool="ckpt-test") == 4
    finally:
        stop()
    assert m.REGISTRY.get_sample_value("steward_db_pool_pool_size", {"pool": "ckpt-test"}) is None


def test_prices_match_dated_snapshots_only() -> None:
    assert price_of("gpt-4o-mini-2024-07-18") == price_of("gpt-4o-mini")
    assert price_of("gpt-4o-2024-08-06") == price_of("gpt-4o")
    assert price_of("gpt-4-0613") is None
    assert price_of("gpt-4o-minix") is None
    assert price_of("gpt-4o-audio-preview") is None
    assert price_of("no-such-model") is None


def test_cost_uses_input_output_and_cached_rates() -> None:
    assert cost_usd("gpt-4o-mini", input_tokens=1_000_000, output_tokens=0) == pytest.approx(0.15)
    assert cost_usd("gpt-4o-mini", input_tokens=0, output_tokens=1_000_000) == pytest.approx(0.6)
    assert cost_usd(
        "gpt-4o-mini", input_tokens=1_000_000, output_tokens=0, cached_input_tokens=1_000_000
    ) == pytest.approx(0.075)
    assert cost_usd("unknown-model", input_tokens=10, output_tokens=10) is None


def test_set_model_price_adds_a_model() -> None:
    set_model_price("local-llama", ModelPrice(input=0.0, output=0.0))
    assert cost_usd("local-llama-2025-01-31", input_tokens=100, output_tokens=100) == 0.0
