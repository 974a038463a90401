"""The failed-authentication budget of each source address (app/auth/limiter.py)."""

from __future__ import annotations

import logging

import pytest

from app.auth.limiter import FailedAuthenticationLimiter
from domain.errors import THROTTLING_MESSAGE, ThrottlingError


class FakeClock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def limiter(clock: FakeClock, **options: float) -> FailedAuthenticationLimiter:
    settings = {"burst": 3, "per_second": 1.0, "max_sources": 100} | options
    return FailedAuthenticationLimiter(clock=clock, **settings)  # type: ignore[arg-type]


def test_a_source_may_fail_a_burst_of_times_before_it_is_exhausted(clock):
    budget = limiter(clock)

    assert [budget.charge("198.51.100.7") for _ in range(4)] == [True, True, True, False]
    assert budget.exhausted("198.51.100.7")


def test_a_source_that_never_failed_is_not_exhausted(clock):
    assert not limiter(clock).exhausted("198.51.100.7")


def test_one_source_spending_its_budget_leaves_others_theirs(clock):
    budget = limiter(clock)
    for _ in range(3):
        budget.charge("198.51.100.7")

    assert budget.exhausted("198.51.100.7")
    assert not budget.exhausted("203.0.113.9") and budget.charge("203.0.113.9")


def test_the_budget_comes_back_at_its_rate(clock):
    budget = limiter(clock)
    for _ in range(3):
        budget.charge("198.51.100.7")

    clock.now += 0.5
    assert budget.exhausted("198.51.100.7")
    clock.now += 0.5
    assert not budget.exhausted("198.51.100.7")
    assert budget.charge("198.51.100.7") and not budget.charge("198.51.100.7")


def test_the_budget_never_grows_beyond_its_burst(clock):
    budget = limiter(clock)
    budget.charge("198.51.100.7")
    clock.now += 3600

    assert [budget.charge("198.51.100.7") for _ in range(4)] == [True, True, True, False]


def test_only_so_many_sources_are_tracked_the_least_recent_forgotten_first(clock):
    budget = limiter(clock, max_sources=2)
    for source in ("198.51.100.1", "198.51.100.2", "198.51.100.3"):
        for _ in range(3):
            budget.charge(source)

    assert not budget.exhausted("198.51.100.1")  # forgotten: its budget starts again
    assert budget.exhausted("198.51.100.2") and budget.exhausted("198.51.100.3")


def test_a_refusal_is_aws_throttling_exception_and_is_counted(clock):
    budget = limiter(clock)

    refusals = [budget.refuse("198.51.100.7") for _ in range(5)]

    assert all(isinstance(error, ThrottlingError) for error in refusals)
    assert refusals[0].message == THROTTLING_MESSAGE
    assert budget.refused_total == 5


def test_refusals_are_summarised_in_the_log_at_most_once_an_interval(clock, caplog):
    budget = limiter(clock, summary_seconds=60.0)
    caplog.set_level(logging.WARNING, logger="keyledger.auth")
    for _ in range(3):
        budget.charge("198.51.100.7")

    for _ in range(1000):
        budget.refuse("198.51.100.7")
    clock.now += 61
    budget.refuse("198.51.100.7")

    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("refused 1 request(s) from 1 source(s)")
    assert lines[1].startswith("refused 1000 request(s) from 1 source(s)")
    assert "most from 198.51.100.7: 1000" in lines[1]
