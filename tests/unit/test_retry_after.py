"""Parsing `Retry-After` and sizing the wait it adds to the retry policy's backoff."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from graph.retry import llm_retry_policy, parse_retry_after, policy_backoff, retry_after_wait


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "1.5"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after": "-3"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "whenever"}, None),
        ({}, None),
    ],
)
def test_retry_after_values(headers: dict[str, str], seconds: float | None) -> None:
    assert parse_retry_after(headers) == seconds


def test_retry_after_as_an_http_date() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after({"retry-after": formatdate(now + 30, usegmt=True)}, now=now) == 30
    assert parse_retry_after({"retry-after": formatdate(now - 30, usegmt=True)}, now=now) == 0


def test_the_wait_tops_up_the_policy_backoff_to_the_capped_retry_after() -> None:
    policy = llm_retry_policy(3)
    assert policy_backoff(policy, 1) == 0.5 and policy_backoff(policy, 2) == 1.0
    assert retry_after_wait(policy, failures=1, retry_after=5, cap_s=30) == 4.5
    assert retry_after_wait(policy, failures=2, retry_after=5, cap_s=30) == 4.0
    assert retry_after_wait(policy, failures=1, retry_after=3600, cap_s=10) == 9.5
    assert retry_after_wait(policy, failures=1, retry_after=0.2, cap_s=30) == 0
    assert retry_after_wait(policy, failures=1, retry_after=None, cap_s=30) == 0
    # After the last attempt the run fails at once: no point waiting.
    assert retry_after_wait(policy, failures=3, retry_after=5, cap_s=30) == 0
