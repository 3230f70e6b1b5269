"""vegeta's Pacer interface over a schedule from `scenario.schedules`: "how long until the next request, and is the
schedule over?", for an engine or a test with a fake clock."""

from __future__ import annotations

from collections.abc import Iterator


class Pacer:
    """`pace(elapsed, hits) -> (wait, stop)` over the intended offsets `times`."""

    def __init__(self, times: Iterator[float]):
        self._times = times
        self._known: list[float] = []

    def time_of(self, hit: int) -> float | None:
        """Intended offset of request `hit`, or None when the schedule has fewer requests."""
        while len(self._known) <= hit:
            nxt = next(self._times, None)
            if nxt is None:
                return None
            self._known.append(nxt)
        return self._known[hit]

    def pace(self, elapsed: float, hits: int) -> tuple[float, bool]:
        """How long to wait before request number `hits` (0 if it is due or late), and whether the schedule is over."""
        due = self.time_of(hits)
        if due is None:
            return 0.0, True
        return max(0.0, due - elapsed), False
