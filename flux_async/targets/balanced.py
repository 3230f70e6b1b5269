"""Several targets of one protocol behind one: round-robin, or the one with the fewest requests in flight."""

from __future__ import annotations

import asyncio
import itertools

from flux_async.measure import attribution
from flux_async.scenario.workload import Job
from flux_async.targets.base import Outcome, Target


class BalancedTarget(Target):
    """Spreads requests over several targets: round-robin, or the one with the fewest requests in flight."""

    def __init__(self, targets: list[Target], policy: str):
        self.targets, self.policy = targets, policy
        self.protocol, self.model = targets[0].protocol, targets[0].model
        self.returns_images = all(t.returns_images for t in targets)
        self.unverifiable = next((t.unverifiable for t in targets if t.unverifiable), None)
        self.returns_seeds = all(getattr(t, "returns_seeds", True) for t in targets)  # see verifier.open
        self.url = ",".join(t.url for t in targets)
        self._cycle = itertools.cycle(range(len(targets)))
        self._in_flight = [0] * len(targets)

    async def open(self) -> None:
        await asyncio.gather(*(t.open() for t in self.targets))

    async def live(self) -> bool:
        return any(await asyncio.gather(*(t.live() for t in self.targets)))

    async def statistics(self) -> dict[str, dict] | None:
        snapshots = await asyncio.gather(*(t.statistics() for t in self.targets))
        present = [s for s in snapshots if s is not None]
        return None if len(present) < len(snapshots) else attribution.merge(present)

    async def send(self, job: Job) -> Outcome:
        if self.policy == "least-in-flight":
            index = min(range(len(self.targets)), key=self._in_flight.__getitem__)
        else:
            index = next(self._cycle)
        self._in_flight[index] += 1
        try:
            return await self.targets[index].send(job)
        finally:
            self._in_flight[index] -= 1

    async def close(self) -> None:
        await asyncio.gather(*(t.close() for t in self.targets), return_exceptions=True)
