"""Rate mode's keep-up check: the completion rate between the first and last completion, not requests / step time."""

from __future__ import annotations

import io

from rich.console import Console

from flux_async.run.capacity import CompletionClock, keep_up_result
from flux_async.run.runner import RunOptions, run_capacity
from flux_async.scenario.config import parse_scenario


async def test_a_long_latency_alone_is_not_falling_behind():
    """A fake server with unlimited room and 1 s per request, 2 s steps: it keeps up with any rate, but
    requests / (step + drain) is 8 / 3 s = 2.7/s at 4/s offered (the old check failed it at the first step)."""
    scenario = parse_scenario({
        "name": "slow-but-wide", "target": {"url": "fake://?latency=1s"}, "workload": {"prompts": ["a"]},
        "verify": False, "capacity": {"start": 4, "max": 8, "step_duration": "2s", "min_requests": 4, "repeats": 1,
                                      "warmup": False}})
    report, code = await run_capacity(scenario, RunOptions(progress=False, verify=False), ["p(99) < 2s"], {},
                                      Console(file=io.StringIO()))
    capacity = report["capacity"]
    assert code == 0 and capacity["max_rate_per_s"] == 8 and capacity["bounded_by"].startswith("at least 8")
    for step in capacity["steps"]:
        assert step["achieved_requests_per_s"] < 0.95 * step["load"]  # what the old check read
        assert abs(step["completion_rate_per_s"] - step["load"]) < 0.1 * step["load"]


def test_a_backlog_reads_as_the_service_rate():
    clock = CompletionClock()
    clock.done_ns = [int(i * 1e9 / 1.3) for i in range(20)]  # a saturated server: one completion every 1/1.3 s
    assert abs(clock.rate_per_s() - 1.3) < 1e-6
    assert keep_up_result(1.5, clock.rate_per_s())["ok"] is False
    assert keep_up_result(1.35, clock.rate_per_s()) == {"expr": "completion_rate_per_s >= 1.2825",
                                                        "value": clock.rate_per_s(), "ok": True}
    clock.done_ns = clock.done_ns[:2]
    assert clock.rate_per_s() is None and keep_up_result(1.0, None)["ok"] is False
