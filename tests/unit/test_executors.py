"""Executors: the registry, each one's YAML rules (with their paths), its schedule and its split over workers."""

from __future__ import annotations

import itertools

import pytest

from flux_async.errors import WorkerSplitError
from flux_async.scenario.executors import (
    EXECUTORS,
    Burst,
    ClosedLoop,
    ConstantArrivalRate,
    ConstantConcurrency,
    Executor,
    OpenLoop,
    PoissonArrivalRate,
    RampingArrivalRate,
    RampingConcurrency,
)
from flux_async.scenario.reader import Reader
from flux_async.scenario.schedules import Stage


def parse(data: dict) -> tuple[Executor, list[str]]:
    r = Reader()
    phase = EXECUTORS[data["executor"]].parse(r, data, "phases[0]", name="p")
    return phase, r.problems


def first(times, n=50) -> list[float]:
    return [round(t, 6) for t in itertools.islice(times, n)]


def test_the_registry_names_every_executor_in_the_documented_order():
    assert list(EXECUTORS) == ["constant-concurrency", "ramping-concurrency", "constant-arrival-rate",
                               "poisson-arrival-rate", "ramping-arrival-rate", "burst", "trace"]
    for name, executor in EXECUTORS.items():
        assert executor.executor == name and issubclass(executor, (OpenLoop, ClosedLoop))
    assert issubclass(ConstantConcurrency, ClosedLoop) and issubclass(RampingConcurrency, ClosedLoop)
    assert all(issubclass(e, OpenLoop) for e in (ConstantArrivalRate, PoissonArrivalRate, RampingArrivalRate, Burst))


def test_a_phase_reports_its_executor_name():
    phase, problems = parse({"executor": "burst", "burst_size": 2, "every": "1s", "bursts": 3, "warmup": True})
    assert not problems and phase.executor == "burst" and phase.name == "p" and phase.warmup


@pytest.mark.parametrize("data, expected", [
    ({"executor": "constant-concurrency", "concurrency": 0, "requests": 1},
     ["phases[0].concurrency: must be an integer >= 1, got 0"]),
    ({"executor": "constant-concurrency", "concurrency": 2, "max_in_flight": 2},
     ["phases[0]: needs a duration or a requests count",
      "phases[0].max_in_flight: applies to arrival-rate and burst executors; a concurrency executor keeps exactly "
      "its concurrency in flight"]),
    ({"executor": "constant-arrival-rate", "duration": "1s"}, ["phases[0].rate: is required"]),
    ({"executor": "constant-arrival-rate", "rate": "0/s", "requests": 3},
     ["phases[0].rate: must be a rate > 0 like 5/s, got '0/s'"]),
    ({"executor": "poisson-arrival-rate", "rate": "2/s", "seed": -1, "duration": "2s"},
     ["phases[0].seed: must be an integer >= 0, got -1"]),
    ({"executor": "poisson-arrival-rate", "rate": "2/s"}, ["phases[0]: needs a duration or a requests count"]),
    ({"executor": "ramping-arrival-rate", "stages": [{"target": 2}], "duration": "5s"},
     ["phases[0].stages[0].duration: is required",
      "phases[0]: a ramping executor's length is the sum of its stages: remove duration/requests"]),
    ({"executor": "ramping-concurrency", "stages": [], "start": -1},
     ["phases[0].start: must be a number >= 0, got -1", "phases[0].stages: must be a non-empty list of "
                                                        "{target, duration}"]),
    ({"executor": "burst", "burst_size": 2, "every": "1s", "duration": "3s"},
     ["phases[0].bursts: is required", "phases[0].duration: a burst phase lasts bursts x every: remove duration"]),
    ({"executor": "burst", "burst_size": 2, "every": "1s", "bursts": 2, "rate": "1/s"},
     ["phases[0].rate: unknown key (allowed: name, executor, duration, requests, warmup, max_in_flight, "
      "thresholds, burst_size, every, bursts)"]),
])
def test_each_executor_reports_its_problems_with_their_yaml_paths(data, expected):
    assert parse(data)[1] == expected


def test_constant_arrival_rate_is_paced_evenly_and_capped():
    phase = ConstantArrivalRate(name="r", rate=4, duration_s=2.0)
    assert first(phase.arrivals(None)) == [i / 4 for i in range(8)] and phase.planned_s(None) == 2.0
    assert first(phase.arrivals(1.0)) == [0.0, 0.25, 0.5, 0.75] and phase.planned_s(1.0) == 1.0
    counted = ConstantArrivalRate(name="r", rate=4, requests=3)
    assert first(counted.arrivals(None)) == [0.0, 0.25, 0.5] and counted.planned_s(None) is None


def test_poisson_arrivals_follow_the_seed():
    phase = PoissonArrivalRate(name="p", rate=50, duration_s=10.0, seed=7)
    times = list(phase.arrivals(None))
    assert times == list(phase.arrivals(None)) and times != list(PoissonArrivalRate(
        name="p", rate=50, duration_s=10.0, seed=8).arrivals(None))
    assert times[0] == 0.0 and max(times) < 10.0 and len(times) == pytest.approx(500, rel=0.15)


def test_ramping_arrival_rate_lasts_its_stages_unless_capped():
    phase = RampingArrivalRate(name="r", start=2, stages=[Stage(2, 2), Stage(0, 2)])
    assert phase.planned_s(None) == 4.0 and phase.planned_s(1.2) == 1.2
    assert first(phase.arrivals(None)) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.585786]
    assert first(phase.arrivals(1.2)) == [0.0, 0.5, 1.0]


def test_burst_sends_whole_bursts_and_a_cap_drops_later_ones():
    phase = Burst(name="b", burst_size=3, every_s=2.5, bursts=3)
    assert list(phase.arrivals(None)) == [0.0] * 3 + [2.5] * 3 + [5.0] * 3 and phase.planned_s(None) == 5.0
    assert list(phase.arrivals(3.0)) == [0.0] * 3 + [2.5] * 3 and phase.planned_s(3.0) == 3.0


def test_closed_loop_executors_give_their_concurrency_over_time():
    steady = ConstantConcurrency(name="c", concurrency=3, duration_s=10.0)
    assert steady.peak_concurrency == 3 and steady.concurrency_at(99) == 3 and steady.planned_s(4.0) == 4.0
    ramp = RampingConcurrency(name="r", start=1, stages=[Stage(5, 4), Stage(2, 2)])
    assert ramp.peak_concurrency == 5 and ramp.planned_s(None) == 6.0 and ramp.planned_s(0) == 6.0
    assert [ramp.concurrency_at(t) for t in (0, 2, 4, 5, 60)] == [1, 3, 5, 3.5, 2]


def test_split_shares_whole_numbers_and_interleaves_arrivals():
    concurrency = ConstantConcurrency(name="c", concurrency=5, requests=11)
    shares = [concurrency.split(i, 3) for i in range(3)]
    assert [(s.concurrency, s.requests, s.seed) for s in shares] == [(2, 4, 0), (2, 4, 1), (1, 3, 2)]
    rate = PoissonArrivalRate(name="p", rate=9, duration_s=3.0, max_in_flight=4, seed=10)
    # open loop: the same schedule (rate, seed) everywhere, each generator its stripe of it
    assert [(s.rate, s.max_in_flight, s.seed, s.stripe) for s in (rate.split(i, 2) for i in range(2))] == [
        (9, 2, 10, (0, 2)), (9, 2, 10, (1, 2))]
    burst = Burst(name="b", burst_size=7, every_s=1.0, bursts=2).split(2, 3)
    assert (burst.burst_size, burst.bursts, burst.every_s, burst.stripe) == (2, 2, 1.0, (0, 1))
    ramp = RampingArrivalRate(name="r", start=2, stages=[Stage(8, 2)]).split(1, 4)
    assert (ramp.start, ramp.stages, ramp.stripe) == (2, [Stage(8, 2)], (1, 4))
    assert type(ramp) is RampingArrivalRate and rate.stripe == (0, 1)  # the original is left as it was


@pytest.mark.parametrize("phase", [
    ConstantArrivalRate(name="r", rate=10, duration_s=2.0),
    ConstantArrivalRate(name="n", rate=7, requests=23),
    PoissonArrivalRate(name="p", rate=30, duration_s=3.0, seed=4),
    RampingArrivalRate(name="ramp", start=1, stages=[Stage(40, 2), Stage(5, 1)]),
], ids=["rate", "requests", "poisson", "ramp"])
@pytest.mark.parametrize("count", [2, 3, 8])
def test_split_open_loop_generators_send_exactly_the_whole_schedule_interleaved(phase, count):
    """N generators' requests together are the one generator's, offset for offset; none sends two in a row of the
    whole schedule (at 10/s over 8 generators: 20 requests, not 8 x 3 = 24 all at the same instants)."""
    whole = [offset for offset, _ in phase.schedule(None)]
    parts = [[offset for offset, _ in phase.split(i, count).schedule(None)] for i in range(count)]
    assert sorted(o for part in parts for o in part) == whole
    for index, part in enumerate(parts):
        assert part == whole[index::count]


@pytest.mark.parametrize("phase, message", [
    (ConstantConcurrency(name="c", concurrency=2, requests=10), "phase 'c': concurrency 2 cannot be split over 3"),
    (Burst(name="b", burst_size=2, every_s=1.0, bursts=2), "phase 'b': burst_size 2 cannot be split over 3"),
    (ConstantArrivalRate(name="r", rate=9, requests=2), "phase 'r': requests 2 cannot be split over 3"),
    (ConstantArrivalRate(name="r", rate=9, duration_s=1.0, max_in_flight=1),
     "phase 'r': max_in_flight 1 cannot be split over 3"),
])
def test_split_refuses_a_whole_number_smaller_than_the_workers(phase, message):
    with pytest.raises(WorkerSplitError, match=message):
        phase.split(0, 3)
