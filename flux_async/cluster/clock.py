"""Clock offsets between the coordinator and its agents, and the one start instant converted to each agent's clock.

Cristian's method: over several round trips, the one with the shortest round trip bounds the offset best —
offset = agent clock − midpoint of the coordinator's send and receive, uncertain by ± half that round trip."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

ROUNDS = 9
WARN_UNCERTAINTY_MS = 5.0  # above this the report and the console say the start is this loose
REFUSE_UNCERTAINTY_MS = 100.0  # above this agents cannot start together meaningfully: the run is refused


@dataclass(frozen=True)
class ClockOffset:
    """An agent's clock minus the coordinator's (ns), within ± `uncertainty_ns`."""

    offset_ns: int
    uncertainty_ns: int

    def agent_time(self, coordinator_ns: int) -> int:
        """The agent's clock reading at the coordinator's instant `coordinator_ns`."""
        return coordinator_ns + self.offset_ns

    def as_dict(self) -> dict:
        return {"clock_offset_ms": round(self.offset_ns / 1e6, 3),
                "clock_uncertainty_ms": round(self.uncertainty_ns / 1e6, 3)}


def measure_offset(read_agent_clock: Callable[[], int], rounds: int = ROUNDS,
                   now: Callable[[], int] = time.perf_counter_ns) -> ClockOffset:
    """The offset of the clock `read_agent_clock` returns (a blocking round trip), from the shortest of `rounds`."""
    best: ClockOffset | None = None
    for _ in range(rounds):
        sent = now()
        agent = read_agent_clock()
        received = now()
        half = (received - sent) // 2
        if best is None or half < best.uncertainty_ns:
            best = ClockOffset(agent - (sent + half), half)
    assert best is not None, "rounds must be >= 1"
    return best
