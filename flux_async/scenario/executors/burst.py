"""burst: `burst_size` requests at once, every `every` seconds, `bursts` times."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flux_async.scenario import schedules
from flux_async.scenario.executors.base import OpenLoop, share
from flux_async.scenario.reader import Reader, parse_duration


@dataclass(kw_only=True)
class Burst(OpenLoop):
    executor = "burst"
    required = ("burst_size", "every", "bursts")

    burst_size: int
    every_s: float
    bursts: int

    @classmethod
    def parse_own(cls, r: Reader, data: dict, path: str) -> dict[str, Any]:
        return {"burst_size": r.positive_int(data, "burst_size", path),
                "every_s": r.get(data, "every", path, parse_duration, None, lambda v: v > 0, "must be > 0"),
                "bursts": r.positive_int(data, "bursts", path)}

    def validate(self, r: Reader, path: str) -> None:
        if self.duration_s:
            r.problem(f"{path}.duration", "a burst phase lasts bursts x every: remove duration")

    def planned_s(self, cap_s: float | None) -> float | None:
        length = (self.bursts - 1) * self.every_s  # the last burst leaves at its start
        return min(length, cap_s or length)

    def arrivals(self, cap_s: float | None) -> Iterator[float]:
        bursts = self.bursts if cap_s is None else min(self.bursts, int(cap_s // self.every_s) + 1)
        return schedules.burst(self.burst_size, self.every_s, bursts)

    def split_own(self, index: int, count: int, where: str) -> dict[str, Any]:
        return {"burst_size": share(self.burst_size, index, count, f"{where} burst_size")}
