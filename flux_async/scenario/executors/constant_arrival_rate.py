"""constant-arrival-rate: requests evenly spaced at `rate` per second, for a duration or a number of requests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flux_async.scenario import schedules
from flux_async.scenario.executors.base import OpenLoop, capped
from flux_async.scenario.reader import Reader, parse_rate


def read_rate(r: Reader, data: dict, path: str) -> float | None:
    return r.get(data, "rate", path, parse_rate, None, lambda v: v > 0, "must be a rate > 0 like 5/s")


@dataclass(kw_only=True)
class ConstantArrivalRate(OpenLoop):
    executor = "constant-arrival-rate"
    required = ("rate",)

    rate: float  # requests per second

    @classmethod
    def parse_own(cls, r: Reader, data: dict, path: str) -> dict[str, Any]:
        return {"rate": read_rate(r, data, path)}

    def validate(self, r: Reader, path: str) -> None:
        self.needs_an_end(r, path)

    def planned_s(self, cap_s: float | None) -> float | None:
        return capped(self.duration_s, cap_s)

    def arrivals(self, cap_s: float | None) -> Iterator[float]:
        return schedules.constant(self.rate, self.planned_s(cap_s), self.requests)

