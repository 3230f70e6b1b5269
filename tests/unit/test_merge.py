"""Merging: logs of several agents add up exactly; worker shares of a scenario; attribution deltas; /metrics."""

from __future__ import annotations

import random

import pytest

from flux_async.errors import WorkerSplitError
from flux_async.measure.attribution import delta, first_to_queue, normalize
from flux_async.measure.recorder import Counters, Interval, new_histogram
from flux_async.measure.triton_metrics import parse
from flux_async.report.hlog import HlogWriter
from flux_async.report.hlog_merge import merge_logs, summary
from flux_async.run.workers import divide
from flux_async.scenario.config import parse_scenario


def write_agent_log(path, samples_by_second):
    writer = HlogWriter(path)
    for second, samples in enumerate(samples_by_second):
        histogram = new_histogram()
        for value in samples:
            histogram.record_value(value)
        start = writer.start_ns + second * 1_000_000_000
        writer.write(Interval(start, start + 1_000_000_000, {("steady", "latency"): histogram}, {"steady": Counters()}))
    writer.close()


def test_merged_logs_equal_the_histogram_of_all_samples(tmp_path):
    rng = random.Random(3)
    agents = [[[rng.randint(1_000, 5_000_000) for _ in range(500)] for _ in range(3)] for _ in range(3)]
    paths = []
    for i, samples in enumerate(agents):
        paths.append(tmp_path / f"agent{i}.hlog")
        write_agent_log(paths[-1], samples)
    merged = merge_logs(paths)
    combined = new_histogram()
    for agent in agents:
        for second in agent:
            for value in second:
                combined.record_value(value)
    total = merged.totals["steady:latency"]
    assert total.get_total_count() == combined.get_total_count() == 4500
    assert all(total.get_value_at_percentile(p) == combined.get_value_at_percentile(p)
               for p in (1, 50, 90, 99, 99.9, 100))
    assert total.equals(combined)
    assert summary(merged)["steady:latency"]["count"] == 4500 and len(merged.intervals) == 9


def test_worker_shares_add_up_to_the_scenario():
    scenario = parse_scenario({"workload": {"prompts": ["a"]}, "phases": [
        {"name": "c", "executor": "constant-concurrency", "concurrency": 5, "requests": 11},
        {"name": "r", "executor": "constant-arrival-rate", "rate": "9/s", "duration": "3s", "max_in_flight": 4},
        {"name": "b", "executor": "burst", "burst_size": 7, "every": "1s", "bursts": 2},
        {"name": "p", "executor": "ramping-arrival-rate", "start": 2, "stages": [{"target": 8, "duration": "2s"}]}]})
    shares = [divide(scenario, i, 3) for i in range(3)]
    assert sum(s.phases[0].concurrency for s in shares) == 5 and sum(s.phases[0].requests for s in shares) == 11
    # open loop: each worker its stripe of the one schedule, which together are the whole of it
    for phase in (1, 3):
        whole = list(scenario.phases[phase].schedule(None))
        assert sorted(offset for s in shares for offset, _ in s.phases[phase].schedule(None)) == [o for o, _ in whole]
        assert {s.phases[phase].seed for s in shares} == {scenario.phases[phase].seed}
    assert sum(s.phases[1].max_in_flight for s in shares) == 4
    assert sum(s.phases[2].burst_size for s in shares) == 7
    with pytest.raises(WorkerSplitError, match="concurrency 5 cannot be split over 6 workers"):
        divide(scenario, 0, 6)


STATS_BEFORE = {"model_stats": [{"name": "dit_transformer", "inference_count": 10, "execution_count": 8,
                                 "inference_stats": {"success": {"count": 9, "ns": 0}, "fail": {"count": 0, "ns": 0},
                                                     "queue": {"count": 9, "ns": 9_000_000},
                                                     "compute_infer": {"count": 9, "ns": 90_000_000}},
                                 "batch_stats": [{"batch_size": 1, "compute_infer": {"count": 6}},
                                                 {"batch_size": 2, "compute_infer": {"count": 2}}]}]}
STATS_AFTER = {"model_stats": [{"name": "dit_transformer", "inference_count": "30", "execution_count": "16",
                                "inference_stats": {"success": {"count": "21", "ns": "0"},
                                                    "fail": {"count": "1", "ns": "0"},
                                                    "queue": {"count": "21", "ns": "69000000"},
                                                    "compute_infer": {"count": "21", "ns": "210000000"}},
                                "batch_stats": [{"batch_size": "1", "compute_infer": {"count": "8"}},
                                                {"batch_size": "2", "compute_infer": {"count": "4"}},
                                                {"batch_size": "4", "compute_infer": {"count": "4"}}]}]}


def test_statistics_delta_per_model():
    stages = delta(normalize(STATS_BEFORE), normalize(STATS_AFTER))  # gRPC's JSON has int64 as strings
    dit = stages["dit_transformer"]
    assert (dit["requests"], dit["failures"], dit["batch_items"], dit["executions"]) == (12, 1, 20, 8)
    assert dit["avg_batch_size"] == 2.5 and dit["batch_sizes"] == {"1": 2, "2": 2, "4": 4}
    assert dit["queue_ms"] == 5.0 and dit["compute_infer_ms"] == 10.0
    assert first_to_queue(stages) == "dit_transformer"


def test_prometheus_families_are_kept_per_model():
    text = ('# TYPE nv_inference_queue_duration_us counter\n'
            'nv_inference_queue_duration_us{model="bls",version="1"} 1500\n'
            'nv_inference_queue_duration_us{model="vae_decoder",version="1"} 25\n'
            '# TYPE nv_gpu_memory_used_bytes gauge\n'
            'nv_gpu_memory_used_bytes{gpu_uuid="GPU-1"} 2.5e+09\n'
            '# TYPE nv_cpu_utilization gauge\nnv_cpu_utilization 0.5\n')
    values = parse(text)
    assert values["nv_inference_queue_duration_us"] == {"bls": 1500.0, "vae_decoder": 25.0}
    assert values["nv_gpu_memory_used_bytes"] == {"GPU-1": 2.5e9} and "nv_cpu_utilization" not in values
