"""poisson-arrival-rate: Poisson arrivals averaging `rate` per second, reproducible for a `seed`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flux_async.scenario import schedules
from flux_async.scenario.executors.base import OpenLoop, capped
from flux_async.scenario.executors.constant_arrival_rate import read_rate
from flux_async.scenario.reader import Reader, integer


@dataclass(kw_only=True)
class PoissonArrivalRate(OpenLoop):
    executor = "poisson-arrival-rate"
    required = ("rate",)
    optional = ("seed",)

    rate: float  # mean requests per second

    @classmethod
    def parse_own(cls, r: Reader, data: dict, path: str) -> dict[str, Any]:
        return {"rate": read_rate(r, data, path),
                "seed": r.get(data, "seed", path, integer, 0, lambda v: v >= 0, "must be an integer >= 0")}

    def validate(self, r: Reader, path: str) -> None:
        self.needs_an_end(r, path)

    def planned_s(self, cap_s: float | None) -> float | None:
        return capped(self.duration_s, cap_s)

    def arrivals(self, cap_s: float | None) -> Iterator[float]:
        return schedules.poisson(self.rate, self.seed, self.planned_s(cap_s), self.requests)

