"""The fake target: no server and no images, a configurable latency, stall and failure rate."""

from __future__ import annotations

import asyncio
import time
import urllib.parse

from flux_async.scenario.config import TargetConfig, parse_duration
from flux_async.scenario.workload import Job
from flux_async.targets.base import Endpoint, Outcome, Target


class FakeTarget(Target):
    """No server and no images. `fake://?latency=20ms&stall_at=2s&stall=1s`: each request takes `latency`;
    requests that would leave during [stall_at, stall_at + stall) wait (before they are sent) until the stall ends."""

    returns_images = False
    unverifiable = "the fake target makes no images: nothing to verify"

    def __init__(self, endpoint: Endpoint, config: TargetConfig):
        query = dict(urllib.parse.parse_qsl(endpoint.query))
        unknown = set(query) - {"latency", "stall_at", "stall", "fail_every"}
        if unknown:
            raise ValueError(f"fake:// takes latency, stall_at, stall and fail_every, not {', '.join(sorted(unknown))}")
        self.latency_s = parse_duration(query.get("latency", "10ms"))
        self.stall_at_s = parse_duration(query["stall_at"]) if "stall_at" in query else None
        self.stall_s = parse_duration(query.get("stall", "0"))
        self.fail_every = int(query.get("fail_every", "0"))
        self.protocol, self.url, self.model = config.protocol, endpoint.url("fake"), config.model_name
        self._started: float | None = None
        self._count = 0

    async def open(self) -> None:
        self._started = time.perf_counter()

    async def statistics(self) -> None:
        return None  # no server

    async def live(self) -> bool:
        return True

    async def send(self, job: Job) -> Outcome:
        if self.stall_at_s is not None:
            assert self._started is not None, "open() first"
            elapsed = time.perf_counter() - self._started
            if self.stall_at_s <= elapsed < self.stall_at_s + self.stall_s:
                await asyncio.sleep(self.stall_at_s + self.stall_s - elapsed)
        sent = time.perf_counter_ns()
        self._count += 1
        number = self._count
        await asyncio.sleep(self.latency_s)
        if self.fail_every and number % self.fail_every == 0:
            return Outcome(sent, time.perf_counter_ns(), False, error_kind="INTERNAL", error="fake failure")
        return Outcome(sent, time.perf_counter_ns(), True, images=len(job.prompts),
                       first_ns=sent if self.protocol == "grpc-stream" else None)

    async def close(self) -> None:
        pass
