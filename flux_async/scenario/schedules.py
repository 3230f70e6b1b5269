"""Intended start times and ramped levels, as pure functions of a schedule (vegeta's pacers are the model).

A schedule yields the intended offset, in seconds from the phase start, of request 0, 1, 2, ...; request n of an
arrival-rate schedule starts when the expected number of arrivals reaches n.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    """Ramp linearly from the previous level to `target` over `duration_s` seconds."""

    target: float
    duration_s: float


def bounded(times: Iterator[float], duration: float | None, count: int | None) -> Iterator[float]:
    """The times before `duration`, at most `count` of them."""
    for n, t in enumerate(times):
        if (count is not None and n >= count) or (duration is not None and t >= duration):
            return
        yield t


def constant(rate: float, duration: float | None = None, count: int | None = None) -> Iterator[float]:
    """Evenly spaced: request n at n / rate."""
    return bounded((n / rate for n in range(2**62)), duration, count)


def poisson(rate: float, seed: int, duration: float | None = None, count: int | None = None) -> Iterator[float]:
    """Poisson arrivals (exponential gaps of mean 1/rate), reproducible for a seed; request 0 at 0."""
    rng = random.Random(seed)

    def times() -> Iterator[float]:
        t = 0.0
        while True:
            yield t
            t += rng.expovariate(rate)

    return bounded(times(), duration, count)


def ramp_length(stages: Sequence[Stage]) -> float:
    return sum(s.duration_s for s in stages)


def level_at(start: float, stages: Sequence[Stage], t: float) -> float:
    """The ramped level (rate or concurrency) at time t; the last target after the ramp."""
    level = start
    for stage in stages:
        if t < stage.duration_s:
            return level + (stage.target - level) * t / stage.duration_s
        t -= stage.duration_s
        level = stage.target
    return level


def ramping(start: float, stages: Sequence[Stage], count: int | None = None) -> Iterator[float]:
    """Arrival rate ramped linearly per stage: request n when the integral of the rate reaches n."""

    def times() -> Iterator[float]:
        n, offset, level, done = 0, 0.0, start, 0.0  # done: arrivals expected before this stage
        for stage in stages:
            r0, r1, d = level, stage.target, stage.duration_s
            area = (r0 + r1) * d / 2
            while n - done < area:
                x = n - done  # arrivals into this stage; solve r0 t + (r1 - r0) t^2 / (2d) = x
                slope = (r1 - r0) / d
                t = x / r0 if abs(slope) < 1e-12 else (-r0 + math.sqrt(max(r0 * r0 + 2 * slope * x, 0.0))) / slope
                if t >= d:
                    break
                yield offset + t
                n += 1
            offset, level, done = offset + d, r1, done + area

    return bounded(times(), None, count)


def burst(size: int, every: float, bursts: int) -> Iterator[float]:
    """`size` requests at once, every `every` seconds, `bursts` times (the first at 0)."""
    return (k * every for k in range(bursts) for _ in range(size))
