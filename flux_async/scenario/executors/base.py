"""The executor interface: a phase's common fields, how it is read from YAML, and the hooks each executor fills in
(its own fields, its rules, its schedule, its share of the load). k6's lib/executor is the model."""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from flux_async.errors import WorkerSplitError
from flux_async.scenario.reader import Reader, boolean, parse_duration
from flux_async.scenario.thresholds import Threshold

if TYPE_CHECKING:
    from flux_async.scenario.trace_file import TraceLine

COMMON_KEYS = ("name", "executor", "duration", "requests", "warmup", "max_in_flight", "thresholds")

E = TypeVar("E", bound="Executor")


def share(total: int, index: int, count: int, what: str) -> int:
    """Generator `index`'s part of `total` whole units split over `count` (the first ones take the remainder)."""
    if total < count:
        raise WorkerSplitError(f"{what} {total} cannot be split over {count} workers (each needs at least 1)")
    return total // count + (1 if index < total % count else 0)


def capped(duration_s: float | None, cap_s: float | None) -> float | None:
    """The shorter of a phase's duration and the run's cap on a phase (None: neither is set)."""
    shortest = min(x for x in (duration_s, cap_s, float("inf")) if x is not None)
    return None if shortest == float("inf") else shortest


@dataclass(kw_only=True)
class Executor(ABC):
    """One phase: how its load is generated, plus the fields every executor shares."""

    executor: ClassVar[str]  # the YAML `executor:` value naming this class
    required: ClassVar[tuple[str, ...]] = ()  # YAML keys beyond COMMON_KEYS
    optional: ClassVar[tuple[str, ...]] = ()

    name: str
    duration_s: float | None = None
    requests: int | None = None
    warmup: bool = False  # run, but left out of the totals
    max_in_flight: int | None = None  # open loop: requests over this many in flight are dropped
    seed: int = 0  # the schedule's randomness (Poisson arrivals); each load generator adds its index
    thresholds: list[Threshold] = field(default_factory=list)

    # ---- reading ---------------------------------------------------------------------------------------------
    @classmethod
    def parse(cls: type[E], r: Reader, data: dict, path: str, name: str) -> E:
        """Read a phase mapping whose `executor` names this class; problems go to `r`, under `path`."""
        data = r.mapping(data, path, COMMON_KEYS + cls.required + cls.optional, ("executor",) + cls.required)
        common = {
            "duration_s": r.get(data, "duration", path, parse_duration, None, lambda v: v > 0, "must be > 0"),
            "requests": r.positive_int(data, "requests", path),
            "warmup": r.get(data, "warmup", path, boolean, False, expect="must be true or false"),
            "max_in_flight": r.positive_int(data, "max_in_flight", path)}
        own = cls.parse_own(r, data, path)
        phase = cls(name=name, **common, **own, thresholds=r.thresholds(data.get("thresholds"), f"{path}.thresholds"))
        phase.validate(r, path)
        return phase

    @classmethod
    @abstractmethod
    def parse_own(cls, r: Reader, data: dict, path: str) -> dict[str, Any]:
        """This executor's own fields from `data`, as keyword arguments."""

    @abstractmethod
    def validate(self, r: Reader, path: str) -> None:
        """Report rules that span fields (e.g. a phase needs an end)."""

    def needs_an_end(self, r: Reader, path: str) -> None:
        if not (self.duration_s or self.requests):
            r.problem(path, "needs a duration or a requests count")

    # ---- running ---------------------------------------------------------------------------------------------
    @abstractmethod
    def planned_s(self, cap_s: float | None) -> float | None:
        """The phase's planned length in seconds under the run's cap on a phase (None: until its requests are done)."""

    # ---- splitting over load generators ----------------------------------------------------------------------
    def split(self: E, index: int, count: int) -> E:
        """Generator `index`'s share (of `count`) of this phase's load; raises `WorkerSplitError` when a whole number
        (requests, concurrency, ...) is smaller than `count`."""
        where = f"phase {self.name!r}:"
        parts = self.split_own(index, count, where)
        striped = "stripe" in parts  # every generator makes the whole schedule (same seed) and sends its stripe
        if not striped:
            parts["seed"] = self.seed + index
        if self.requests is not None:
            requests = share(self.requests, index, count, f"{where} requests")  # too few to split: an error
            if not striped:
                parts["requests"] = requests
        if self.max_in_flight is not None:
            parts["max_in_flight"] = share(self.max_in_flight, index, count, f"{where} max_in_flight")
        return replace(self, **parts)

    @abstractmethod
    def split_own(self, index: int, count: int, where: str) -> dict[str, Any]:
        """Generator `index`'s share of this executor's own fields, as keyword arguments for `replace`."""

    # ---- running elsewhere -----------------------------------------------------------------------------------
    def files(self) -> list[Path]:
        """The local files this phase reads while it runs (a cluster ships them to agents on other hosts)."""
        return []

    def relocated(self: E, paths: dict[Path, Path]) -> E:
        """This phase reading its files from `paths` (old path: new path), e.g. an agent's copies."""
        return self

    def report_fields(self) -> dict[str, Any]:
        """What the report's phase says about this executor beyond its figures (a trace: its file and lines)."""
        return {}


@dataclass(kw_only=True)
class OpenLoop(Executor):
    """Sends each request at its intended time, whether or not earlier ones have answered. Split over N load
    generators, each makes the whole schedule and sends every N-th arrival from its index (`stripe`): together they
    send exactly the one generator's arrivals, interleaved, never N at the same instant."""

    stripe: tuple[int, int] = (0, 1)  # (index, count): this generator sends arrivals index, index + count, ...

    @abstractmethod
    def arrivals(self, cap_s: float | None) -> Iterator[float]:
        """Intended start offsets, in seconds from the phase start, of request 0, 1, 2, ... (the whole schedule)."""

    def schedule(self, cap_s: float | None) -> Iterator[tuple[float, TraceLine | None]]:
        """(intended offset, the request) of this generator's requests: None is the workload's next request; a trace
        gives each its own line."""
        index, count = self.stripe
        return itertools.islice(((offset, None) for offset in self.arrivals(cap_s)), index, None, count)

    def split_own(self, index: int, count: int, where: str) -> dict[str, Any]:
        return {"stripe": (index, count)}


class ClosedLoop(Executor):
    """Keeps a number of requests in flight: each virtual user sends its next request when its last one answers."""

    @property
    @abstractmethod
    def peak_concurrency(self) -> int:
        """The most requests ever in flight (the number of virtual users to start)."""

    @abstractmethod
    def concurrency_at(self, t: float) -> float:
        """Requests to keep in flight `t` seconds into the phase."""

    def no_in_flight_cap(self, r: Reader, path: str) -> None:
        if self.max_in_flight:
            r.problem(f"{path}.max_in_flight", "applies to arrival-rate and burst executors; a concurrency "
                                               "executor keeps exactly its concurrency in flight")
