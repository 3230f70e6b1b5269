"""Honest intervals: the run's last, shorter interval never reports a rate over its stub (timeline, .hlog, and the
workers' combined timeline), and merged intervals keep every count and histogram."""

from __future__ import annotations

import asyncio

import pytest

from flux_async.load.engine import Engine
from flux_async.measure.recorder import Counters, Interval, Recorder, merge_intervals, new_histogram
from flux_async.measure.timeline import Timeline, combine
from flux_async.measure.triton_metrics import MetricsScraper
from flux_async.report.hlog import HlogWriter, read_log
from flux_async.scenario.config import parse_scenario
from flux_async.targets.factory import make_target

NS = 1_000_000_000


async def run_until_just_past_a_boundary(tmp_path):
    """10 requests/s for 2.05 s with 45 ms of latency: the last completion lands ~0.05 s after the 2 s boundary."""
    scenario = parse_scenario({"name": "t", "target": {"url": "fake://?latency=45ms"}, "workload": {"prompts": ["a"]},
                               "phases": [{"executor": "constant-arrival-rate", "rate": "10/s", "duration": "2.05s"}]})
    target = make_target(scenario.target)
    await target.open()
    timeline, hlog = Timeline(), HlogWriter(tmp_path / "r.hlog")
    engine = Engine(scenario, target, Recorder(), listeners=[timeline.add, hlog.write], lost_after_s=None)
    await engine.run()
    hlog.close()
    return timeline.rows, read_log(tmp_path / "r.hlog")


async def test_the_last_interval_is_merged_not_reported_as_a_spike(tmp_path):
    rows, logged = await run_until_just_past_a_boundary(tmp_path)
    assert sum(row["ok"] for row in rows) == 21
    assert len(rows) == 2 and all(row["dt"] >= 0.99 for row in rows), rows  # no stub row
    assert rows[-1]["dt"] > 1.0  # the stub went into the last full interval
    for row in rows:
        assert row["requests_per_s"] == pytest.approx(row["ok"] / row["dt"], rel=0.01)
    assert max(row["requests_per_s"] for row in rows) <= 10 * 1.25  # the offered rate, never 1 / 0.05 s
    assert all(length >= 0.99 for _, length, _, _ in logged)  # the interval log has no stub either
    assert sum(h.get_total_count() for _, _, tag, h in logged if tag.endswith(":latency")) == 21


async def test_a_run_shorter_than_one_interval_keeps_its_only_row(tmp_path):
    scenario = parse_scenario({"name": "t", "target": {"url": "fake://?latency=5ms"}, "workload": {"prompts": ["a"]},
                               "phases": [{"executor": "constant-concurrency", "concurrency": 1, "requests": 5}]})
    target = make_target(scenario.target)
    await target.open()
    timeline = Timeline()
    await Engine(scenario, target, Recorder(), listeners=[timeline.add], lost_after_s=None).run()
    assert len(timeline.rows) == 1 and timeline.rows[0]["ok"] == 5 and timeline.rows[0]["dt"] < 1.0


def interval(start_s: float, end_s: float, values_us: list[int], ok: int, samples: dict) -> Interval:
    histogram = new_histogram()
    for value in values_us:
        histogram.record_value(value)
    counters = Counters(sent=ok, ok=ok, images_ok=2 * ok)
    return Interval(int(start_s * NS), int(end_s * NS), {("p", "latency"): histogram}, {"p": counters}, samples)


def test_merging_intervals_keeps_every_count_and_combines_samplers():
    earlier = interval(0, 1.0, [1000, 2000], 2, {"metrics": {"nv_inference_count": {"bls": 3.0},
                                                             "nv_gpu_utilization": {"g": 0.5}}, "outbound_queue": 4})
    later = interval(1.0, 1.2, [3000], 1, {"metrics": {"nv_inference_count": {"bls": 1.0},
                                                       "nv_gpu_utilization": {"g": 0.9}}, "outbound_queue": 0})
    merged = merge_intervals(earlier, later, {"metrics": MetricsScraper.combine})
    assert (merged.start_ns, merged.end_ns) == (0, int(1.2 * NS))
    assert merged.histograms[("p", "latency")].get_total_count() == 3
    assert merged.counters["p"].ok == 3 and merged.counters["p"].images_ok == 6
    assert merged.samples["metrics"] == {"nv_inference_count": {"bls": 4.0}, "nv_gpu_utilization": {"g": 0.9}}
    assert merged.samples["outbound_queue"] == 0  # a gauge: the later reading


def test_combined_workers_take_each_rate_over_its_own_interval_lengths():
    """Two workers whose grids are 0.3 s apart; worker B's last row is a merged 1.6 s interval, which a count per
    cell would read as 16/s."""
    histogram = new_histogram()
    histogram.record_value(5000)
    a = (1000.0, [{"t": 0.0, "dt": 1.0, "sent": 10, "ok": 10, "images": 10},
                  {"t": 1.0, "dt": 1.0, "sent": 10, "ok": 10, "images": 10}], [(1000.001, 1.0, "p:latency", histogram)])
    b = (1000.3, [{"t": 0.0, "dt": 1.0, "sent": 10, "ok": 10, "images": 20, "outbound_queue": 3},
                  {"t": 1.0, "dt": 1.6, "sent": 16, "ok": 16, "images": 32}], [])
    rows = combine([a, b])
    assert [row["requests_per_s"] for row in rows] == [20.0, 10.0, 10.0]
    assert [row["images_per_s"] for row in rows] == [30.0, 10.0, 20.0]
    assert sum(row["ok"] for row in rows) == 46 and rows[0]["outbound_queue"] == 3
    assert rows[0]["latency_p50_ms"] == pytest.approx(5.0, rel=0.01) and rows[1]["latency_p50_ms"] is None
    assert combine([]) == []


async def test_intervals_tick_on_a_fixed_grid(tmp_path):
    """Rows start at whole multiples of the interval (no drift from sampling time): workers' rows stay aligned."""
    async def slow_sampler():
        await asyncio.sleep(0.15)  # every reading takes 150 ms
        return 1

    scenario = parse_scenario({"name": "t", "target": {"url": "fake://?latency=5ms"}, "workload": {"prompts": ["a"]},
                               "phases": [{"executor": "constant-arrival-rate", "rate": "20/s", "duration": "4.5s"}]})
    target = make_target(scenario.target)
    await target.open()
    timeline = Timeline()
    await Engine(scenario, target, Recorder(), listeners=[timeline.add], samplers={"slow": slow_sampler},
                 lost_after_s=None).run()
    starts = [row["t"] for row in timeline.rows]  # each close waits for its reading, but the waits do not add up
    assert starts[:4] == pytest.approx([0.0, 1.15, 2.15, 3.15], abs=0.05), timeline.rows
    assert all(row["slow"] == 1 and 0 <= row["loop_busy"] < 1 for row in timeline.rows)
