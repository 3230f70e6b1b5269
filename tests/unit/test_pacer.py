"""Intended start times of every schedule, checked as tables with a fake clock (vegeta's pacer tests)."""

from __future__ import annotations

import pytest

from flux_async.load.pacer import Pacer
from flux_async.scenario import schedules
from flux_async.scenario.schedules import Stage


def rounded(times, digits=6):
    return [round(t, digits) for t in times]


@pytest.mark.parametrize("rate, duration, count, expected", [
    (4, 1.0, None, [0.0, 0.25, 0.5, 0.75]),
    (2, None, 3, [0.0, 0.5, 1.0]),
    (0.5, 5.0, None, [0.0, 2.0, 4.0]),
    (10, 0.3, 2, [0.0, 0.1]),
])
def test_constant_rate(rate, duration, count, expected):
    assert rounded(schedules.constant(rate, duration, count)) == expected


def test_poisson_is_seeded_and_has_the_asked_mean_rate():
    first = list(schedules.poisson(50, seed=7, duration=200))
    assert first == list(schedules.poisson(50, seed=7, duration=200))
    assert first != list(schedules.poisson(50, seed=8, duration=200))
    assert first[0] == 0.0 and all(b > a for a, b in zip(first, first[1:]))
    assert len(first) == pytest.approx(50 * 200, rel=0.03)  # 10 000 arrivals: within 3 %


@pytest.mark.parametrize("start, stages, expected", [
    (0, [Stage(10, 2)], [0.0, 0.632456, 0.894427, 1.095445, 1.264911, 1.414214, 1.549193, 1.673320, 1.788854,
                         1.897367]),  # n-th arrival at sqrt(2 n d / 10)
    (2, [Stage(2, 2), Stage(0, 2)], [0.0, 0.5, 1.0, 1.5, 2.0, 2.585786]),  # hold, then ramp down
    (4, [Stage(0, 1)], [0.0, 0.292893]),  # 4 → 0 over 1 s: 2 arrivals expected
    (0, [Stage(0, 5)], []),  # a zero rate sends nothing
])
def test_ramping_rate(start, stages, expected):
    assert rounded(schedules.ramping(start, stages)) == expected


def test_ramping_rate_integrates_to_the_expected_count():
    times = list(schedules.ramping(1, [Stage(9, 10), Stage(9, 10)]))
    assert len(times) == (1 + 9) * 10 // 2 + 9 * 10  # 50 during the ramp, 90 while holding


@pytest.mark.parametrize("start, stages, t, level", [
    (1, [Stage(4, 10)], 0, 1), (1, [Stage(4, 10)], 5, 2.5), (1, [Stage(4, 10)], 10, 4),
    (1, [Stage(4, 10)], 99, 4), (0, [Stage(2, 1), Stage(2, 1), Stage(0, 2)], 3, 1),
])
def test_ramped_level(start, stages, t, level):
    assert schedules.level_at(start, stages, t) == pytest.approx(level)


def test_burst_sends_each_burst_at_once():
    assert list(schedules.burst(3, 2.5, 2)) == [0.0, 0.0, 0.0, 2.5, 2.5, 2.5]


@pytest.mark.parametrize("elapsed, hits, expected", [
    (0.0, 0, (0.0, False)),  # the first request is due at once
    (0.1, 1, (0.4, False)),  # the second is due at 0.5 s
    (0.7, 1, (0.0, False)),  # late: send now
    (1.2, 3, (0.3, False)),
    (9.0, 4, (0.0, True)),  # the schedule (4 requests) is over
])
def test_pacer_with_a_fake_clock(elapsed, hits, expected):
    wait, stop = Pacer(schedules.constant(2, count=4)).pace(elapsed, hits)
    assert (round(wait, 9), stop) == expected
