"""The engine against the fake target: coordinated-omission correction, drops, closed loops, stop, reports, logs."""

from __future__ import annotations

import asyncio
import time

import pytest
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from flux_async.load.engine import Engine
from flux_async.measure.recorder import Recorder, stat_ms
from flux_async.report.hlog import HlogWriter
from flux_async.report.json_report import build_report
from flux_async.scenario.config import parse_scenario
from flux_async.targets.factory import make_target

REQUIRED_KEYS = {"version", "scenario", "target", "started_at", "duration_s", "passed", "requests", "images",
                 "throughput", "latency_ms", "service_time_ms", "errors_by_kind", "phases", "verification",
                 "thresholds"}
LATENCY_KEYS = {"p50", "p90", "p95", "p99", "p999", "max", "mean"}


def scenario(phases, url="fake://?latency=10ms", thresholds=(), **workload):
    return parse_scenario({"name": "t", "target": {"url": url},
                           "workload": {"prompts": ["a", "b", "c"], **workload},
                           "phases": phases, "thresholds": list(thresholds)})


class Watched:
    """Wraps a target and remembers the most requests it ever had in flight."""

    def __init__(self, target):
        self.target, self.in_flight, self.max_in_flight = target, 0, 0
        self.protocol, self.model, self.url = target.protocol, target.model, target.url

    async def open(self):
        await self.target.open()

    async def close(self):
        await self.target.close()

    async def send(self, job):
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self.target.send(job)
        finally:
            self.in_flight -= 1


async def run(s, **engine_args):
    target = Watched(make_target(s.target))
    await target.open()
    recorder = Recorder()
    engine = Engine(s, target, recorder, **engine_args)
    result = await engine.run()
    return engine, target, recorder, result


async def test_a_stall_shows_in_corrected_latency_but_not_in_service_time():
    """wrk2's point: the target freezes for 1 s (requests wait before they leave); the corrected p99 shows the
    stall, the service time does not; what the in-flight cap cannot hold is dropped, not delayed."""
    s = scenario([{"name": "steady", "executor": "constant-arrival-rate", "rate": "100/s", "duration": "3s",
                   "max_in_flight": 10}], url="fake://?latency=10ms&stall_at=1s&stall=1s")
    _, target, recorder, _ = await run(s)
    latency, service = recorder.merged("latency"), recorder.merged("service")
    assert stat_ms(latency, "p99") > 800
    assert stat_ms(service, "p99") < 100
    counters = recorder.counters["steady"]
    assert counters.dropped > 50 and counters.errors == 0
    assert counters.sent + counters.dropped == 300
    assert target.max_in_flight <= 10


async def test_requests_over_the_cap_are_dropped_never_delayed():
    s = scenario([{"name": "p", "executor": "constant-arrival-rate", "rate": "200/s", "duration": "1s",
                   "max_in_flight": 5}], url="fake://?latency=100ms")
    _, target, recorder, result = await run(s)
    counters = recorder.counters["p"]
    assert counters.sent + counters.dropped == result.phases[0].scheduled == 200
    assert 40 <= counters.sent <= 60 and target.max_in_flight == 5
    assert stat_ms(recorder.merged("lag"), "p99") < 50  # what was sent left on time


async def test_a_burst_due_at_once_never_exceeds_the_in_flight_cap():
    """Arrivals due in the same instant are dispatched before any of their tasks runs: each must see the ones before
    it in flight (counted when spawned, not when the task starts), or the whole burst is sent over the cap."""
    s = scenario([{"name": "b", "executor": "burst", "burst_size": 10, "every": "1s", "bursts": 1,
                   "max_in_flight": 3}], url="fake://?latency=50ms")
    engine, target, recorder, _ = await run(s)
    counters = recorder.counters["b"]
    assert target.max_in_flight == 3 and counters.sent == 3 and counters.dropped == 7
    assert engine.in_flight == 0


async def test_closed_loop_keeps_exactly_its_concurrency():
    s = scenario([{"name": "c", "executor": "constant-concurrency", "concurrency": 3, "requests": 30}])
    _, target, recorder, _ = await run(s)
    assert recorder.counters["c"].sent == 30 and target.max_in_flight == 3


async def test_burst_sends_each_burst_at_once_and_counts_prompts():
    s = scenario([{"name": "b", "executor": "burst", "burst_size": 4, "every": "200ms", "bursts": 3}],
                 prompts_per_request={2: 1})
    _, target, recorder, _ = await run(s)
    counters = recorder.counters["b"]
    assert counters.sent == 12 and counters.images_ok == 24 and target.max_in_flight == 4


async def test_stop_ends_a_long_phase_gracefully():
    s = scenario([{"name": "long", "executor": "constant-arrival-rate", "rate": "20/s", "duration": "60s"}])
    target = make_target(s.target)
    await target.open()
    recorder = Recorder()
    engine = Engine(s, target, recorder)
    asyncio.get_running_loop().call_later(0.5, engine.stop)
    started = time.perf_counter()
    result = await engine.run()
    assert time.perf_counter() - started < 5
    assert result.interrupted and not result.phases[0].finished
    report = build_report(s, result, recorder)
    assert report["interrupted"] and not report["passed"]
    assert report["requests"]["sent"] == report["requests"]["ok"] > 0


async def test_report_has_the_contract_keys_and_leaves_warm_up_out():
    s = scenario([{"name": "warm", "executor": "constant-concurrency", "concurrency": 1, "requests": 3,
                   "warmup": True},
                  {"name": "main", "executor": "constant-concurrency", "concurrency": 2, "requests": 8}],
                 thresholds=["p(99) < 5s", "images_per_s > 1"])
    _, _, recorder, result = await run(s)
    report = build_report(s, result, recorder)
    assert REQUIRED_KEYS <= set(report) and report["version"] == 1
    assert set(report["latency_ms"]) == LATENCY_KEYS == set(report["service_time_ms"])
    assert report["target"] == {"url": "fake://fake?latency=10ms", "protocol": "grpc", "model": "bls"}
    assert report["requests"] == {"sent": 8, "ok": 8, "errors": 0, "dropped": 0}
    assert [p["name"] for p in report["phases"]] == ["warm", "main"] and report["phases"][0]["warmup"]
    assert report["phases"][0]["requests"]["sent"] == 3
    assert [t["expr"] for t in report["thresholds"]] == ["p(99) < 5s", "images_per_s > 1", "error_rate == 0"]
    assert report["passed"] and all(t["ok"] for t in report["thresholds"])
    assert report["verification"]["checked"] == 0


async def test_errors_are_counted_by_kind_and_fail_the_run_without_an_error_budget():
    s = scenario([{"name": "e", "executor": "constant-concurrency", "concurrency": 2, "requests": 20}],
                 url="fake://?latency=1ms&fail_every=4")
    _, _, recorder, result = await run(s)
    report = build_report(s, result, recorder)
    assert report["errors_by_kind"] == {"INTERNAL": 5} and report["requests"]["errors"] == 5
    assert report["error_examples"] == report["phases"][0]["error_examples"] == {"INTERNAL": "fake failure"}
    assert not report["passed"]
    allowed = scenario([{"name": "e", "executor": "constant-concurrency", "concurrency": 2, "requests": 20}],
                       url="fake://?latency=1ms&fail_every=4", thresholds=["error_rate < 30%"])
    _, _, recorder, result = await run(allowed)
    assert build_report(allowed, result, recorder)["passed"]


def test_counters_keep_the_first_message_of_each_error_kind():
    from flux_async.measure.recorder import Counters, Recorder

    recorder = Recorder()
    recorder.count("p", "errors", kind="bad_response", message="output x[0]: not a PNG")
    recorder.count("p", "errors", kind="bad_response", message="output x[1]: not a PNG")
    recorder.count("p", "errors", kind="timeout")
    total = Counters()
    total.add(recorder.counters["p"])
    total.add(Counters(error_examples={"bad_response": "later", "HTTP 500": "boom"}))
    assert total.error_examples == {"bad_response": "output x[0]: not a PNG", "HTTP 500": "boom"}


async def test_hlog_is_readable_by_hdrhistogram(tmp_path):
    s = scenario([{"name": "a", "executor": "constant-arrival-rate", "rate": "50/s", "duration": "1.5s"},
                  {"name": "b", "executor": "constant-concurrency", "concurrency": 2, "requests": 10}])
    writer = HlogWriter(tmp_path / "run.hlog")
    _, _, recorder, _ = await run(s, interval_s=0.5, listeners=[writer.write])
    writer.close()
    reader = HistogramLogReader(str(tmp_path / "run.hlog"), HdrHistogram(1, 3_600_000_000, 3))
    counts: dict[str, int] = {}
    while (histogram := reader.get_next_interval_histogram()) is not None:
        counts[histogram.get_tag()] = counts.get(histogram.get_tag(), 0) + histogram.get_total_count()
    assert reader.get_start_time_sec() == pytest.approx(writer.start_epoch, abs=0.01)
    assert counts["a:latency"] == recorder.merged("latency", {"a"}).get_total_count() == 75
    assert counts["b:service"] == 10 and "a:lag" in counts


async def test_balanced_target_spreads_round_robin():
    s = scenario([{"name": "r", "executor": "constant-concurrency", "concurrency": 1, "requests": 6}],
                 url=None)
    s.target.urls = ["fake://one?latency=1ms", "fake://two?latency=1ms"]
    target = make_target(s.target)
    await target.open()
    seen = []
    for member in target.targets:
        original = member.send
        member.send = (lambda orig, name: (lambda job: (seen.append(name), orig(job))[1]))(original, member.url)
    await Engine(s, target, Recorder()).run()
    assert seen == ["fake://one?latency=1ms", "fake://two?latency=1ms"] * 3
