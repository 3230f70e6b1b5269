"""The tester says when it was the bottleneck: the `client` verdict in the report, the console and the HTML."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import yaml

from flux_async.measure.client_usage import (
    CORES_LIMIT,
    LAG_P99_LIMIT_MS,
    LOOP_BUSY_LIMIT,
    QUEUE_LIMIT,
    combine,
    saturation_reasons,
)

ROOT = Path(__file__).resolve().parents[2]


def run(tmp_path: Path, rate: str, duration: str, latency: str) -> tuple[dict, subprocess.CompletedProcess]:
    scenario = {"name": "load", "target": {"url": f"fake://?latency={latency}"}, "workload": {"prompts": ["a"]},
                "phases": [{"executor": "constant-arrival-rate", "rate": rate, "duration": duration}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    result = subprocess.run([sys.executable, "-m", "flux_async", "run", str(tmp_path / "s.yaml"), "--no-progress",
                             "--report", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html")],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    return json.loads((tmp_path / "r.json").read_text()), result


def test_each_criterion_alone_names_its_reason():
    assert saturation_reasons(0.2, 0.5, 0) == []
    assert "busy 90%" in saturation_reasons(LOOP_BUSY_LIMIT + 0.05, None, 0)[0]
    assert "lag p99 25.0 ms" in saturation_reasons(0.2, LAG_P99_LIMIT_MS + 15, 0)[0]
    assert saturation_reasons(0.2, 25.0, 0, service_p50_ms=1000.0) == []  # 25 ms before a 1 s request: no matter
    assert "queue grew to 11" in saturation_reasons(0.2, 0.1, QUEUE_LIMIT + 1)[0]
    assert "used 95% of a core" in saturation_reasons(0.2, 0.1, 0, cores=CORES_LIMIT + 0.05)[0]


def test_an_overloaded_tester_says_so(tmp_path):
    """fake:// at a rate one process cannot send: the run is flagged, with its reasons, in all three outputs."""
    report, result = run(tmp_path, "100000/s", "0.5s", "0ms")
    client = report["client"]
    assert client["saturated"] and client["reasons"], client
    # which limits it crosses depends on where the backlog sits (the pacing thread, the loop's queue) on the machine
    assert all(r.startswith(("its process used", "its event loop was busy", "requests left late",
                             "its outbound queue grew")) for r in client["reasons"]), client
    assert client["cores"] > CORES_LIMIT or client["loop_busy_max"] > LOOP_BUSY_LIMIT \
        or client["schedule_lag_p99_ms"] > LAG_P99_LIMIT_MS or client["outbound_queue_max"] > QUEUE_LIMIT
    assert "TESTER SATURATED: figures may describe the tester, not the service" in result.stdout
    assert 'id="tester-warning"' in (tmp_path / "r.html").read_text()


def test_a_tester_with_headroom_is_not_flagged(client_run):
    """fake:// at 40 requests/s of 5 ms each (the session's client_run, tests/unit/conftest.py): not flagged."""
    client = client_run.report["client"]
    assert not client["saturated"] and client["reasons"] == [], client
    assert client["loop_busy"] < LOOP_BUSY_LIMIT and client["outbound_queue_max"] <= QUEUE_LIMIT
    assert client["cores"] < CORES_LIMIT
    assert "TESTER SATURATED" not in client_run.stdout and "client: " in client_run.stdout
    assert 'id="tester-warning"' not in (client_run.folder / "r.html").read_text()


def test_combined_clients_are_saturated_if_any_part_was():
    calm = {"requests": 10, "cpu_s": 0.01, "loop_busy": 0.1, "schedule_lag_p99_ms": 0.2, "outbound_queue_max": 0,
            "reasons": [], "name": "worker 0/2"}
    busy = {**calm, "requests": 30, "cpu_s": 0.05, "loop_busy": 0.95, "reasons": ["its event loop was busy 95%"],
            "name": "worker 1/2"}
    merged = combine([calm, busy])
    assert merged["saturated"] and merged["reasons"] == ["worker 1/2: its event loop was busy 95%"]
    assert merged["requests"] == 40 and merged["cpu_us_per_request"] == 1500.0 and merged["loop_busy"] == 0.95


class LoopBlockingTarget:
    """Each send blocks the event loop for 15 ms (no CPU: a sleep): at most ~66 requests/s leave."""

    protocol, model, url = "grpc", "m", "blocking://"

    async def open(self):
        pass

    async def close(self):
        pass

    async def statistics(self):
        return None

    async def live(self):
        return True

    async def send(self, job):
        import time

        from flux_async.targets.base import Outcome

        time.sleep(0.015)
        now = time.perf_counter_ns()
        return Outcome(now, now, True, images=1)


async def test_a_backlog_held_across_intervals_is_the_outbound_queue():
    from flux_async.load.engine import Engine
    from flux_async.measure.recorder import Recorder
    from flux_async.measure.timeline import Timeline
    from flux_async.scenario.config import parse_scenario

    scenario = parse_scenario({"name": "t", "target": {"url": "fake://"}, "workload": {"prompts": ["a"]},
                               "phases": [{"executor": "constant-arrival-rate", "rate": "100/s", "duration": "4s"}]})
    timeline = Timeline()
    engine = Engine(scenario, LoopBlockingTarget(), Recorder(), listeners=[timeline.add], lost_after_s=None)
    await engine.run()
    # ~34 more due than sent each second; 4 s so that, on a busy machine whose blocked loop stretches the intervals
    # to 1.5-2 s, two interval ends in a row still fall while requests are due
    assert engine.outbound_queue_max > QUEUE_LIMIT, timeline.rows
    assert timeline.rows[0]["outbound_queue"] > QUEUE_LIMIT
    assert engine.loop_busy_max < LOOP_BUSY_LIMIT  # a sleeping loop is late, not busy: the queue tells


async def test_a_blocked_loop_stretches_intervals_instead_of_leaving_stubs():
    """A close delayed past the next grid tick (the loop was blocked) is followed an interval later, not at once: a
    stub interval of a few ms would read as a 100 % busy loop."""
    import time

    from flux_async.load.engine import Engine
    from flux_async.measure.recorder import Recorder
    from flux_async.scenario.config import parse_scenario

    scenario = parse_scenario({"name": "t", "target": {"url": "fake://"}, "workload": {"prompts": ["a"]},
                               "phases": [{"executor": "constant-concurrency", "concurrency": 1, "requests": 1}]})
    engine = Engine(scenario, LoopBlockingTarget(), Recorder(), lost_after_s=None, interval_s=0.2)
    closes = []

    async def close(final=False):
        if not closes:
            time.sleep(0.3)  # the first close ends late (a blocked loop), after the next tick
        closes.append(time.perf_counter())  # when the interval ended

    engine._close_interval, engine._interval_start = close, time.perf_counter_ns()
    task = asyncio.create_task(engine._intervals())
    await asyncio.sleep(0.75)
    task.cancel()
    gaps = [round(b - a, 3) for a, b in zip(closes, closes[1:])]
    assert len(closes) >= 2 and min(gaps) >= 0.19, gaps
