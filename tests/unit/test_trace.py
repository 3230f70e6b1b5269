"""executor: trace — the JSONL reader (its errors name file:line), the schedule (speed, start, end, loop, striping over
workers), the jobs a line makes (its class's settings where it leaves them out), and a replay against the fake
target sent at the trace's timestamps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flux_async.errors import ScenarioError
from flux_async.load.engine import Engine
from flux_async.measure.client_usage import LAG_P99_LIMIT_MS
from flux_async.measure.recorder import Recorder, stat_ms
from flux_async.scenario.config import parse_scenario
from flux_async.scenario.executors import TraceReplay
from flux_async.scenario.model_contract import BLS
from flux_async.scenario.trace_file import TraceError, TraceFile, TraceLine, check, parse_line
from flux_async.scenario.workload import JobSource
from flux_async.targets.factory import make_target


def write(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def scenario(tmp_path: Path, phase: dict, url: str = "fake://?latency=5ms", **workload):
    data = {"name": "t", "target": {"url": url}, "verify": False,
            "workload": {"prompts": ["a", "b"], "seed": 10, "size": "64x64", **workload},
            "phases": [{"name": "replay", "executor": "trace", **phase}]}
    return parse_scenario(data, str(tmp_path / "s.yaml"), tmp_path)


# ---- the reader --------------------------------------------------------------------------------------------------
def test_a_line_gives_its_fields_and_leaves_the_rest_out():
    line = parse_line('{"timestamp": 12.5, "prompts": ["x", "y"], "seed": 7, "size": "128x64", "steps": 3, '
                      '"guidance": 2, "class": "final", "extra": {"lora": "a"}, "latency_ms": 9}', 4)
    assert line == TraceLine(4, 12.5, ("x", "y"), (7, 8), 64, 128, 3, 2.0, request_class="final",
                             extra={"lora": "a"})
    bare = parse_line('{"timestamp": 0, "prompt": "x"}', 1)
    assert bare.seeds is None and bare.height is None and bare.request_class is None and bare.extra is None


@pytest.mark.parametrize("text, message", [
    ("not json", "not JSON"),
    ("[1, 2]", "must be a JSON object, got list"),
    ('{"prompt": "x"}', "timestamp must be a number of ms >= 0"),
    ('{"timestamp": -1, "prompt": "x"}', "timestamp must be a number of ms >= 0"),
    ('{"timestamp": 1}', "needs prompt (a non-empty string) or prompts"),
    ('{"timestamp": 1, "prompt": "x", "prompts": ["y"]}', "give either prompt or prompts, not both"),
    ('{"timestamp": 1, "prompts": ["x", "y"], "seeds": [1]}', "seeds must be a list of 2 integers"),
    ('{"timestamp": 1, "prompt": "x", "size": "64"}', "size must look like 512x256"),
    ('{"timestamp": 1, "prompt": "x", "width": 100}', "width must be a multiple of 16 in [64, 2048], got 100"),
    ('{"timestamp": 1, "prompt": "x", "steps": 0}', "steps must be an integer in [1, 100], got 0"),
    ('{"timestamp": 1, "prompt": "x", "guidance": 31}', "guidance must be a number in [0, 30], got 31"),
    ('{"timestamp": 1, "prompt": "x", "class": "a b"}', "class must be a name of letters"),
    ('{"timestamp": 1, "prompt": "x", "extra": [1]}', "extra must be a JSON object"),
])
def test_a_bad_line_is_named_with_its_file_and_line_number(tmp_path, text, message):
    trace = write(tmp_path / "x.jsonl", [{"timestamp": 0, "prompt": "ok"}, "", text])
    with pytest.raises(TraceError) as error:
        check(trace, "traces/x.jsonl")
    assert str(error.value).startswith("traces/x.jsonl:3: ") and message in str(error.value)


def test_timestamps_must_not_go_back(tmp_path):
    trace = TraceFile(write(tmp_path / "back.jsonl", [{"timestamp": 5, "prompt": "a"},
                                                      {"timestamp": 4, "prompt": "b"}]), "t.jsonl")
    with pytest.raises(TraceError, match=r"^t.jsonl:2: timestamp must be .* not before the line above \(the line "
                                         r"above: 5\), got 4$"):
        trace.check()


def test_skip_bad_lines_counts_them_and_keeps_the_rest(tmp_path):
    trace = write(tmp_path / "x.jsonl", [{"timestamp": 0, "prompt": "a"}, "oops", {"timestamp": 3, "prompt": "b"},
                                         {"timestamp": 1, "prompt": "back"}, {"timestamp": 9, "prompt": "c"}])
    summary = check(trace, "x.jsonl", skip_bad_lines=True)
    assert (summary.lines, summary.skipped_lines, summary.first_ms, summary.last_ms) == (3, 2, 0.0, 9.0)
    assert summary.first_skipped is not None and summary.first_skipped.startswith("x.jsonl:2: not JSON")
    with pytest.raises(TraceError, match="x.jsonl: holds no request"):
        check(write(tmp_path / "empty.jsonl", ["", "nope"]), "x.jsonl", skip_bad_lines=True)


def test_the_scenario_checks_the_trace_before_the_run(tmp_path):
    (tmp_path / "traces").mkdir()
    write(tmp_path / "traces" / "x.jsonl", [{"timestamp": 0, "prompt": "a"}, {"timestamp": 1, "prompt": ""}])
    with pytest.raises(ScenarioError) as error:
        scenario(tmp_path, {"file": "traces/x.jsonl", "speed": 0})
    problems = error.value.problems
    assert "phases[0].speed: must be a number > 0 (2: twice as fast), got 0" in problems
    assert any(p.startswith("phases[0].file: traces/x.jsonl:2: needs prompt") for p in problems)
    with pytest.raises(ScenarioError, match="cannot read the trace"):
        scenario(tmp_path, {"file": "traces/missing.jsonl"})
    phase = scenario(tmp_path, {"file": "traces/x.jsonl", "skip_bad_lines": True}).phases[0]
    assert isinstance(phase, TraceReplay) and phase.file == tmp_path / "traces" / "x.jsonl"
    assert phase.report_fields() == {"trace": {"file": "traces/x.jsonl", "lines": 1, "skipped_lines": 1,
                                               "speed": 1.0}}


# ---- the schedule ------------------------------------------------------------------------------------------------
def offsets(phase: TraceReplay, cap_s=None) -> list[tuple[float, str]]:
    return [(round(t, 6), line.prompts[0]) for t, line in phase.schedule(cap_s)]


@pytest.fixture
def ten(tmp_path) -> Path:  # a line every 100 ms, 0 to 900 ms
    write(tmp_path / "ten.jsonl", [{"timestamp": 100 * i, "prompt": f"p{i}"} for i in range(10)])
    return tmp_path


def test_speed_start_end_and_the_time_cap(ten):
    plain = scenario(ten, {"file": "ten.jsonl"}).phases[0]
    assert offsets(plain) == [(i / 10, f"p{i}") for i in range(10)] and plain.planned_s(None) == 0.9
    fast = scenario(ten, {"file": "ten.jsonl", "speed": 2}).phases[0]
    assert offsets(fast) == [(i / 20, f"p{i}") for i in range(10)] and fast.planned_s(None) == 0.45
    window = scenario(ten, {"file": "ten.jsonl", "start": "300ms", "end": "600ms"}).phases[0]
    assert offsets(window) == [(0.0, "p3"), (0.1, "p4"), (0.2, "p5")] and window.planned_s(None) == 0.3
    assert offsets(plain, cap_s=0.25) == [(0.0, "p0"), (0.1, "p1"), (0.2, "p2")] and plain.planned_s(0.25) == 0.25
    counted = scenario(ten, {"file": "ten.jsonl", "requests": 2}).phases[0]
    assert offsets(counted) == [(0.0, "p0"), (0.1, "p1")]


def test_a_loop_repeats_the_window_every_period(ten):
    loop = scenario(ten, {"file": "ten.jsonl", "start": "200ms", "end": "400ms", "loop": True,
                          "duration": "1s"}).phases[0]
    assert offsets(loop) == [(0.0, "p2"), (0.1, "p3"), (0.2, "p2"), (0.3, "p3"), (0.4, "p2"), (0.5, "p3"),
                             (0.6, "p2"), (0.7, "p3"), (0.8, "p2"), (0.9, "p3")]
    assert loop.planned_s(None) == 1.0
    with pytest.raises(ScenarioError, match="a looping trace needs a duration or a requests count"):
        scenario(ten, {"file": "ten.jsonl", "loop": True})
    with pytest.raises(ScenarioError, match=r"phases\[0\].end: must be after start"):
        scenario(ten, {"file": "ten.jsonl", "start": "1s", "end": "1s"})


def test_workers_take_every_line_once_at_its_own_time(ten):
    phase = scenario(ten, {"file": "ten.jsonl"}).phases[0]
    shares = [offsets(phase.split(i, 3)) for i in range(3)]
    assert shares[1] == [(0.1, "p1"), (0.4, "p4"), (0.7, "p7")]
    assert sorted(item for share in shares for item in share) == offsets(phase)


# ---- jobs --------------------------------------------------------------------------------------------------------
def test_a_line_takes_its_classs_settings_where_it_leaves_them_out():
    data = {"prompts": ["a", "b"], "seed": 10, "size": "64x64", "steps": 4,
            "classes": {"preview": {"weight": 1, "size": "128x128", "steps": 2, "prompts": ["q", "b"]}}}
    workload = parse_scenario({"workload": data, "phases": [{"executor": "burst", "burst_size": 1, "every": "1s",
                                                             "bursts": 1}]}).workload
    jobs = JobSource(workload)
    preview = jobs.from_trace(TraceLine(1, 0, ("b", "new"), request_class="preview", steps=8))
    assert (preview.height, preview.steps, preview.request_class) == (128, 8, "preview")
    assert preview.seeds is not None and preview.seeds[0] == 11  # "b" is the class's prompt 1: seed 10 + 1
    assert preview.seeds == jobs.from_trace(TraceLine(2, 0, ("b", "new"), request_class="preview")).seeds
    other = jobs.from_trace(TraceLine(3, 0, ("b",), request_class="other", seeds=(5,), extra={"x": 1}))
    assert (other.height, other.steps, other.seeds, other.request_class) == (64, 4, (5,), "other")
    assert other.extra_key == '{"x":1}'


def test_extra_inputs_named_like_the_models_replace_their_values():
    from flux_async.scenario.workload import Job

    job = Job(0, ("a",), (1,), 4, None, 64, 64, None, extra={"num_inference_steps": 9, "lora_scale": 0.5})
    arrays = BLS.arrays(job)
    assert arrays["num_inference_steps"].tolist() == [9] and "lora_scale" not in arrays


# ---- a replay ----------------------------------------------------------------------------------------------------
async def replay(s):
    target = make_target(s.target)
    await target.open()
    sent: dict[str, float] = {}
    recorder = Recorder()
    engine = Engine(s, target, recorder, lost_after_s=None,
                    observers=[lambda phase, job, outcome: sent.setdefault(job.prompts[0], outcome.sent_ns)])
    result = await engine.run()
    started = result.phases[0].started_ns
    return recorder, {prompt: (ns - started) / 1e9 for prompt, ns in sent.items()}


@pytest.mark.parametrize("speed", [1, 2])
async def test_a_replay_sends_each_line_at_its_timestamp(tmp_path, speed):
    """60 lines over 1.2 s in bursts of 1 to 3 (two classes, one the workload lacks): every line sent once, within
    the engine's schedule accuracy of its timestamp / speed, and counted under its class."""
    lines, t = [], 0.0
    for i in range(60):
        t += 0 if i % 3 == 1 else 40 + (i % 7) * 5
        lines.append({"timestamp": t, "prompt": f"p{i}", "class": "preview" if i % 4 else "batch"})
    write(tmp_path / "t.jsonl", lines)
    s = scenario(tmp_path, {"file": "t.jsonl", "speed": speed},
                 classes={"preview": {"weight": 1, "steps": 2}})
    recorder, sent = await replay(s)
    counters = recorder.counters["replay"]
    assert counters.sent == 60 and counters.ok == 60 and counters.dropped == 0
    assert {name: c.sent for (phase, name), c in recorder.class_counters.items()} == {"preview": 45, "batch": 15}
    # each line at its own timestamp: the typical line well within half the shortest gap between lines (20 ms at
    # speed 2: a line sent at its neighbour's time would be 20 ms off), none early, none grossly late (a loaded
    # machine may delay a few by more than the tester's own lag limit)
    late = sorted(sent[line["prompt"]] - line["timestamp"] / 1000 / speed for line in lines)
    assert late[0] > -0.001 and late[len(late) // 2] < LAG_P99_LIMIT_MS / 1000 and late[-1] < 0.1, late
    assert stat_ms(recorder.merged("lag"), "p50") < LAG_P99_LIMIT_MS
