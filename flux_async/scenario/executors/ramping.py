"""ramping-arrival-rate and ramping-concurrency: a level (rate or concurrency) ramped linearly from `start` through
`stages`; the phase lasts the sum of the stages."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from flux_async.scenario import schedules
from flux_async.scenario.executors.base import ClosedLoop, Executor, OpenLoop
from flux_async.scenario.reader import Reader, number, parse_duration
from flux_async.scenario.schedules import Stage


def read_stages(r: Reader, value: Any, path: str) -> list[Stage]:
    if not isinstance(value, list) or not value:
        r.problem(path, "must be a non-empty list of {target, duration}")
        return []
    stages = []
    for i, item in enumerate(value):
        item = r.mapping(item, f"{path}[{i}]", ("target", "duration"), ("target", "duration"))
        target = r.get(item, "target", f"{path}[{i}]", number, None, lambda v: v >= 0, "must be a number >= 0")
        duration = r.get(item, "duration", f"{path}[{i}]", parse_duration, None, lambda v: v > 0, "must be > 0")
        if target is not None and duration is not None:
            stages.append(Stage(target, duration))
    return stages


def read_ramp(r: Reader, data: dict, path: str) -> dict[str, Any]:
    ramp: dict[str, Any] = {"start": r.get(data, "start", path, number, 0.0, lambda v: v >= 0,
                                           "must be a number >= 0")}
    if "stages" in data:
        ramp["stages"] = read_stages(r, data["stages"], f"{path}.stages")
    return ramp


def split_ramp(start: float, stages: list[Stage], count: int) -> dict[str, Any]:
    """Every level divided by `count` (rates and concurrencies alike: a fraction of a worker is ramped to)."""
    return {"start": start / count, "stages": [Stage(s.target / count, s.duration_s) for s in stages]}


@dataclass(kw_only=True)
class Ramped(Executor):
    """What both ramping executors share: a level from `start` through `stages`, lasting the sum of the stages."""

    required = ("stages",)
    optional = ("start",)

    start: float = 0.0  # the level (requests per second, or in flight) at the phase start
    stages: list[Stage] = field(default_factory=list)

    @classmethod
    def parse_own(cls, r: Reader, data: dict, path: str) -> dict[str, Any]:
        return read_ramp(r, data, path)

    def validate(self, r: Reader, path: str) -> None:
        if self.duration_s or self.requests:
            r.problem(path, "a ramping executor's length is the sum of its stages: remove duration/requests")

    def planned_s(self, cap_s: float | None) -> float | None:
        return min(schedules.ramp_length(self.stages), cap_s or float("inf"))

    def split_own(self, index: int, count: int, where: str) -> dict[str, Any]:
        return split_ramp(self.start, self.stages, count)


@dataclass(kw_only=True)
class RampingArrivalRate(Ramped, OpenLoop):
    executor = "ramping-arrival-rate"

    def arrivals(self, cap_s: float | None) -> Iterator[float]:
        return schedules.bounded(schedules.ramping(self.start, self.stages), self.planned_s(cap_s), None)

    split_own = OpenLoop.split_own  # interleaved arrivals, not Ramped's divided rates


@dataclass(kw_only=True)
class RampingConcurrency(Ramped, ClosedLoop):
    executor = "ramping-concurrency"

    def validate(self, r: Reader, path: str) -> None:
        super().validate(r, path)
        self.no_in_flight_cap(r, path)

    @property
    def peak_concurrency(self) -> int:
        return int(max([self.start] + [s.target for s in self.stages]))

    def concurrency_at(self, t: float) -> float:
        return schedules.level_at(self.start, self.stages, t)
