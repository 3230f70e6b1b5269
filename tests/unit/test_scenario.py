"""Scenario files: validation lists every problem with its YAML path; durations, rates and thresholds parse."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flux_async.scenario.config import ScenarioError, load_scenario, parse_duration, parse_rate, parse_scenario
from flux_async.scenario.thresholds import parse_threshold

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = {"workload": {"prompts": ["a cat"]},
           "phases": [{"executor": "constant-concurrency", "concurrency": 1, "requests": 1}]}


def problems(data) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data)
    return caught.value.problems


@pytest.mark.parametrize("path", sorted((ROOT / "scenarios").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_scenarios_are_valid(path):
    scenario = load_scenario(path)
    assert scenario.workload.prompts and scenario.thresholds
    assert scenario.phases or path.name.startswith("capacity")  # a capacity scenario needs no phases


def test_every_problem_is_reported_at_once_with_its_path():
    found = problems({
        "name": "bad", "colour": "blue",
        "target": {"protocol": "udp", "request_timeout": "soon", "tls": {"ca": "x"}, "compression": "br"},
        "workload": {"prompts": [], "height": 1000, "steps": 0, "prompts_per_request": {9: 1}},
        "phases": [{"executor": "constant-arrival-rate", "rate": "-2/s", "duration": "10s"},
                   {"executor": "teleport"},
                   {"executor": "burst", "burst_size": 4, "every": "1s"},
                   {"executor": "constant-concurrency", "concurrency": 2}],
        "thresholds": ["p(99) <", "error_rate < 1%"],
    })
    expected = [
        "scenario.colour: unknown key",
        "target.protocol: must be one of grpc, grpc-stream, http, openai-images, nim, got 'udp'",
        "target.request_timeout: must be a duration like 10s or 500ms, got 'soon'",
        "target.tls.ca: unknown key",
        "target.compression: must be one of none, gzip, deflate, got 'br'",
        "workload.prompts: must be a non-empty list",
        "workload.height: must be a multiple of 16 in [64, 2048], got 1000",
        "workload.steps: must be an integer in [1, 100], got 0",
        "workload.prompts_per_request.9: prompts per request must be an integer in [1, 8]",
        "phases[0].rate: must be a rate like 5/s or 30/m, got '-2/s'",
        "phases[1].executor: must be one of",
        "phases[2].bursts: is required",
        "phases[3]: needs a duration or a requests count",
        "thresholds[0]: cannot parse threshold 'p(99) <'",
    ]
    for text in expected:
        assert any(p.startswith(text) for p in found), (text, found)
    assert len(found) == len(expected), found


def test_missing_sections_and_duplicate_phase_names():
    found = problems({"phases": [MINIMAL["phases"][0] | {"name": "a"}, MINIMAL["phases"][0] | {"name": "a"}]})
    assert "scenario.workload: is required" in found
    assert "phases: phase name 'a' is used more than once" in found
    assert problems({"workload": {"prompts": ["a"]}}) == [
        "scenario.phases: is required (only a scenario with a capacity section may leave it out)"]


def test_capacity_section():
    capacity = parse_scenario({"workload": {"prompts": ["a"]}, "capacity": {"mode": "concurrency", "start": 1,
                                                                             "max": 8, "step_duration": "5s"}}).capacity
    assert (capacity.mode, capacity.start, capacity.max, capacity.step_duration_s) == ("concurrency", 1, 8, 5.0)
    found = problems({"workload": {"prompts": ["a"]}, "capacity": {"start": 4, "max": 2, "precision": 2}})
    assert "capacity.max: must be >= start (4), got 2" in found
    assert any(p.startswith("capacity.precision: must be in (0, 1)") for p in found)


def test_executor_specific_rules():
    found = problems(MINIMAL | {"phases": [
        {"executor": "ramping-arrival-rate", "stages": [{"target": 2}], "duration": "5s"},
        {"executor": "burst", "burst_size": 2, "every": "1s", "bursts": 2, "duration": "3s"},
    ]})
    assert "phases[0].stages[0].duration: is required" in found
    assert "phases[0]: a ramping executor's length is the sum of its stages: remove duration/requests" in found
    assert "phases[1].duration: a burst phase lasts bursts x every: remove duration" in found


def test_prompts_file_is_read_relative_to_the_scenario(tmp_path):
    (tmp_path / "prompts.txt").write_text("a cat\n\n  a dog  \n")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"workload": {"prompts_file": "prompts.txt"},
                                                     "phases": MINIMAL["phases"]}))
    assert load_scenario(tmp_path / "s.yaml").workload.prompts == ["a cat", "a dog"]


def test_unreadable_or_invalid_yaml_is_a_scenario_error(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read the file"):
        load_scenario(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("phases: [\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(tmp_path / "bad.yaml")


def test_prompts_per_request_forms():
    def ppr(value):
        return parse_scenario(MINIMAL | {"workload": {"prompts": ["a"], "prompts_per_request": value}}) \
            .workload.prompts_per_request
    assert ppr(3) == {3: 1.0}
    assert ppr({"uniform": [1, 3]}) == {1: 1.0, 2: 1.0, 3: 1.0}
    assert ppr({1: 3, 4: 1}) == {1: 3.0, 4: 1.0}


@pytest.mark.parametrize("text, seconds", [("500ms", 0.5), ("2s", 2.0), ("1.5m", 90.0), (3, 3.0), ("250us", 0.00025)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text, per_second", [("5/s", 5.0), ("30/m", 0.5), (2, 2.0), ("1/ms", 1000.0)])
def test_rates(text, per_second):
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("expr, kind, stat, op, limit", [
    ("p(99) < 2s", "latency", "p99", "<", 2000.0),
    ("p(99.9) <= 1500ms", "latency", "p99.9", "<=", 1500.0),
    ("service.p(95) < 800", "service", "p95", "<", 800.0),
    ("ttfr.avg < 1s", "ttfr", "mean", "<", 1000.0),
    ("max < 1m", "latency", "max", "<", 60000.0),
    ("error_rate < 1%", "error_rate", None, "<", 0.01),
    ("drop_rate <= 0.05", "drop_rate", None, "<=", 0.05),
    ("images_per_s > 0.5", "images_per_s", None, ">", 0.5),
    ("errors == 0", "errors", None, "==", 0.0),
])
def test_threshold_grammar(expr, kind, stat, op, limit):
    threshold = parse_threshold(expr)
    assert (threshold.kind, threshold.stat, threshold.op, threshold.limit) == (kind, stat, op, pytest.approx(limit))


@pytest.mark.parametrize("expr, message", [
    ("p(101) < 1s", "percentile"), ("latency_p99 < 1s", "unknown metric 'latency_p99'"),
    ("error_rate < 5ms", "a rate takes % or a fraction"), ("p(99) < 5%", "time unit"), ("p(99) 2s", "cannot parse"),
])
def test_threshold_errors_say_what_is_wrong(expr, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        parse_threshold(expr)
