"""The report as typed data (report/schema.py): lossless JSON round trips of real reports, the README's keys, older
reports loading with defaults, and the merge of `run --workers` reports."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flux_async.report.schema import (
    REPORT_VERSION,
    CapacityReport,
    Figures,
    Latency,
    Report,
    ThresholdResult,
    load_report,
)
from flux_async.report.typed_json import ABSENT

README = Path(__file__).resolve().parents[2] / "README.md"
SCENARIO = ("name: fake\ntarget: {url: 'fake://?latency=5ms'}\nverify: false\nworkload: {prompts: [a], size: 64x64}\n"
            "phases:\n  - {name: warm, executor: constant-arrival-rate, rate: 20/s, duration: 1s, warmup: true}\n"
            "  - {name: steady, executor: constant-arrival-rate, rate: 40/s, duration: 2s}\n"
            "thresholds: ['p(99) < 100ms']\n")


def _run(tmp_path: Path, *flags: str) -> dict:
    (tmp_path / "s.yaml").write_text(SCENARIO)
    subprocess.run([sys.executable, "-m", "flux_async", "run", str(tmp_path / "s.yaml"), "--no-progress", "--report",
                    str(tmp_path / "r.json"), *flags], capture_output=True, timeout=120, check=False)
    return json.loads((tmp_path / "r.json").read_text())


@pytest.fixture(scope="module")
def fake_report(client_run) -> dict:
    """A real run's report (the engine against the fake target): the session's client_run, tests/unit/conftest.py."""
    return copy.deepcopy(client_run.report)


def test_a_real_report_round_trips_exactly(fake_report):
    report = Report.from_json(fake_report)
    assert report.to_json() == fake_report
    assert report.extra == {} and report.version == REPORT_VERSION  # every key has its field
    steady = report.phases[1]
    assert steady.name == "steady" and steady.figures.requests.ok == fake_report["phases"][1]["requests"]["ok"]
    assert report.thresholds[0] == ThresholdResult.from_json(fake_report["thresholds"][0])
    assert isinstance(report.figures.latency_ms, Latency) and report.figures.latency_ms.p99 > 0


def test_every_key_the_readme_lists_is_produced(fake_report):
    text = " ".join(README.read_text().split())
    section = text[text.index("the JSON report (`--report`"):text.index("and the interval log")]
    keys = set(re.findall(r"`([a-z_]+)`", section))
    assert {"version", "requests", "histogram_overflow", "time_to_first_response_ms"} <= keys
    streaming_only = {"time_to_first_response_ms"}  # the fake target does not stream
    assert keys - streaming_only <= set(fake_report)
    assert streaming_only <= set(Figures(time_to_first_response_ms=Latency()).to_json())


def test_an_older_report_loads_with_defaults_and_keeps_unknown_keys():
    old = {"version": 1, "scenario": "s", "target": {"url": "u", "protocol": "grpc", "model": "m"}, "passed": True,
           "requests": {"sent": 3, "ok": 3}, "client": {"cpu_s": 0.5, "event_loop": "uvloop"}, "newer_key": [1]}
    report = Report.from_json(old)
    assert report.figures.requests.errors == 0 and report.figures.latency_ms == Latency()
    assert report.timeline == [] and report.faults is ABSENT and not report.faults
    assert report.client.cpu_s == 0.5 and report.client.saturated is ABSENT
    data = report.to_json()
    assert data["newer_key"] == [1] and "faults" not in data and "workers" not in data
    assert data["client"] == {"cpu_s": 0.5, "event_loop": "uvloop"}  # absent keys stay absent, nested too


def test_a_key_holding_null_is_not_an_absent_key():
    assert ThresholdResult.from_json({"expr": "p(99) < 1s", "value": None, "ok": False}).to_json() == {
        "expr": "p(99) < 1s", "value": None, "ok": False}
    data = {"kind": "capacity", "client": None, "capacity": {"knee": None, "steps": [], "lowest_failing_load": None}}
    report = load_report(data)
    assert isinstance(report, CapacityReport) and report.client is None and report.capacity.knee is None
    assert report.to_json()["client"] is None


def test_the_merged_report_of_two_workers_adds_theirs(tmp_path):
    merged = _run(tmp_path, "--workers", "2")
    assert merged["workers"] == 2 and merged["version"] == REPORT_VERSION
    assert Report.from_json(merged).to_json() == merged
    steady = Report.from_json(merged).phases[1]
    assert steady.figures.requests.sent == steady.figures.requests.ok == 80  # 2 × 20/s × 2 s
    assert merged["requests"] == {"sent": 80, "ok": 80, "errors": 0, "dropped": 0}
    assert merged["verification"]["workers"] == 2 and merged["client"]["parts"] == 2
    assert merged["timeline"] and merged["latency_ms"]["p50"] > 0
