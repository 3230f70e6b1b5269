"""The capacity search over a step runner: a step cut short (a cluster agent lost during it) is recorded as partial,
does not vote, and runs again; the knee is never a partial step."""

from __future__ import annotations

import io

from rich.console import Console

from flux_async.run.capacity import CapacitySearch, LocalSteps, StepResult
from flux_async.scenario.config import parse_scenario
from flux_async.scenario.executors import Executor
from flux_async.targets.factory import make_target


class LosingTheSecondStep(LocalSteps):
    """Steps run here on the fake target; the second comes back partial, as ClusterSteps reports a lost agent."""

    calls = 0

    async def run(self, phase: Executor, start_at_ns: int | None = None) -> StepResult:
        result = await super().run(phase, start_at_ns)
        self.calls += 1
        if self.calls == 2:
            result.partial = "agent 1 lost: ActorDiedError"
        return result


async def test_a_partial_step_runs_again_and_never_votes():
    scenario = parse_scenario({
        "name": "partial", "target": {"url": "fake://?latency=20ms"}, "workload": {"prompts": ["a"]},
        "verify": False, "capacity": {"start": 4, "max": 8, "step_duration": "1s", "min_requests": 4, "repeats": 1,
                                      "warmup": False}})
    target = make_target(scenario.target)
    await target.open()
    output = io.StringIO()
    try:
        search = CapacitySearch(scenario, LosingTheSecondStep(scenario, target), scenario.capacity,
                                ["p(99) < 1s"], Console(file=output, width=300))
        section = await search.run()
    finally:
        await target.close()
    steps = section["steps"]
    assert [s["load"] for s in steps] == [4, 8, 8]
    assert steps[1]["partial"] == "agent 1 lost: ActorDiedError" and "partial" not in steps[2]
    assert section["knee"]["step"] == 3 and section["max_rate_per_s"] == 8
    assert "partial (agent 1 lost: ActorDiedError): not counted, run again" in output.getvalue()
