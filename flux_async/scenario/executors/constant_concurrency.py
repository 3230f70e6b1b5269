"""constant-concurrency: keep `concurrency` requests in flight for a duration or a number of requests."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flux_async.scenario.executors.base import ClosedLoop, capped, share
from flux_async.scenario.reader import Reader


@dataclass(kw_only=True)
class ConstantConcurrency(ClosedLoop):
    executor = "constant-concurrency"
    required = ("concurrency",)

    concurrency: int

    @classmethod
    def parse_own(cls, r: Reader, data: dict, path: str) -> dict[str, Any]:
        return {"concurrency": r.positive_int(data, "concurrency", path)}

    def validate(self, r: Reader, path: str) -> None:
        self.needs_an_end(r, path)
        self.no_in_flight_cap(r, path)

    def planned_s(self, cap_s: float | None) -> float | None:
        return capped(self.duration_s, cap_s)

    @property
    def peak_concurrency(self) -> int:
        return self.concurrency

    def concurrency_at(self, t: float) -> float:
        return self.concurrency

    def split_own(self, index: int, count: int, where: str) -> dict[str, Any]:
        return {"concurrency": share(self.concurrency, index, count, f"{where} concurrency")}
