"""Retry policy: the seed report's semantics, exactly."""

from __future__ import annotations

import pytest

from genqueue import ClassifiedError, ErrorKind, InvalidInput, RetryPolicy
from tests.conftest import FixedRandom


def error(
    kind: ErrorKind, retryable: bool = True, retry_after: float | None = None
) -> ClassifiedError:
    return ClassifiedError(
        kind=kind, retryable=retryable, message="m", type="T", retry_after=retry_after
    )


def test_defaults_match_the_report() -> None:
    policy = RetryPolicy()
    assert (
        policy.max_retries,
        policy.base_delay,
        policy.multiplier,
        policy.jitter,
        policy.max_delay,
    ) == (
        1,
        5.0,
        2.0,
        0.10,
        3600.0,
    )


@pytest.mark.parametrize(
    ("retry_count", "expected"), [(0, 5.0), (1, 10.0), (2, 20.0), (3, 40.0), (10, 3600.0)]
)
def test_exponential_delay_without_jitter(retry_count: int, expected: float) -> None:
    policy = RetryPolicy(jitter=0)
    assert policy.delay(retry_count) == expected


def test_first_retry_waits_the_base() -> None:
    assert RetryPolicy(random=FixedRandom(0.5)).delay(0) == pytest.approx(5.0)


@pytest.mark.parametrize(("fraction", "expected"), [(0.0, 4.5), (1.0, 5.5), (0.25, 4.75)])
def test_jitter_is_plus_minus_ten_percent(fraction: float, expected: float) -> None:
    assert RetryPolicy(random=FixedRandom(fraction)).delay(0) == pytest.approx(expected)


def test_delay_never_exceeds_max_even_with_jitter() -> None:
    policy = RetryPolicy(random=FixedRandom(1.0), max_delay=60)
    assert policy.delay(20) == 60
    assert policy.delay(10_000) == 60  # no float overflow


def test_missing_or_negative_retry_count_counts_as_zero() -> None:
    policy = RetryPolicy(jitter=0)
    assert policy.delay(None) == policy.delay(-3) == 5.0
    assert policy.allows_retry(None) and policy.allows_retry(-1)


def test_max_retries_semantics() -> None:
    policy = RetryPolicy(max_retries=1)
    assert policy.allows_retry(0)
    assert not policy.allows_retry(1)
    assert not policy.allows_retry(99)
    assert RetryPolicy(max_retries=3).allows_retry(2)


def test_decide_retries_transient_errors() -> None:
    decision = RetryPolicy(jitter=0).decide(error(ErrorKind.SERVER), retry_count=0)
    assert decision.retry and decision.delay == 5.0
    assert "retry 1 of 1" in decision.reason


def test_decide_rejects_non_retryable_and_exhausted() -> None:
    policy = RetryPolicy()
    assert not policy.decide(error(ErrorKind.AUTH, retryable=False), 0).retry
    exhausted = policy.decide(error(ErrorKind.SERVER), 1)
    assert not exhausted.retry and "exhausted" in exhausted.reason


def test_retry_after_is_honoured_when_longer() -> None:
    policy = RetryPolicy(jitter=0)
    assert policy.decide(error(ErrorKind.RATE_LIMITED, retry_after=42), 0).delay == 42
    assert policy.decide(error(ErrorKind.RATE_LIMITED, retry_after=1), 0).delay == 5


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_retries": -1},
        {"max_retries": 1001},
        {"max_retries": 1.5},
        {"base_delay": -1},
        {"multiplier": 0.5},
        {"jitter": 1.0},
        {"max_delay": float("inf")},
    ],
)
def test_invalid_policies_are_rejected(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidInput):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]
