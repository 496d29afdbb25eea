"""The dashboard's rate limit on its own, on a clock that moves only when told."""

from __future__ import annotations

import pytest

from dashboard_runs import ManualClock
from dashboards.throttle import RateLimit


def test_a_key_passes_at_once_then_at_most_once_a_period():
    clock = ManualClock()
    limit = RateLimit(5.0, clock)
    assert limit.allow("run-a")
    assert not limit.allow("run-a")
    clock.advance(4.999)
    assert not limit.allow("run-a")
    clock.advance(0.001)
    assert limit.allow("run-a")
    assert not limit.allow("run-a")


def test_each_key_has_its_own_period_started_when_it_last_passed():
    clock = ManualClock()
    limit = RateLimit(5.0, clock)
    assert limit.allow("run-a")
    clock.advance(3.0)
    assert limit.allow("run-b")  # run-a's period does not hold run-b back
    clock.advance(2.0)
    assert limit.allow("run-a") and not limit.allow("run-b")
    clock.advance(3.0)
    assert limit.allow("run-b") and not limit.allow("run-a")


def test_refusals_do_not_restart_the_period():
    clock = ManualClock()
    limit = RateLimit(5.0, clock)
    assert limit.allow("run-a")
    for _ in range(4):
        clock.advance(1.0)
        assert not limit.allow("run-a")
    clock.advance(1.0)
    assert limit.allow("run-a")


def test_period_zero_lets_everything_through_and_a_negative_period_is_refused():
    limit = RateLimit(0.0, ManualClock())
    assert all(limit.allow("run-a") for _ in range(3))
    with pytest.raises(ValueError, match="period"):
        RateLimit(-1.0)
