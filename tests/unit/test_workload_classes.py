"""The workload's request classes (weights, own settings over the workload's, SLOs), prompt files in three formats,
and the draw of classes by weight."""

from __future__ import annotations

import collections

import pytest

from flux_async.errors import ScenarioError
from flux_async.scenario.config import parse_scenario
from flux_async.scenario.workload import JobSource

PHASES = [{"executor": "constant-concurrency", "concurrency": 1, "requests": 1}]


def scenario(workload: dict, base_dir=None, **target):
    return parse_scenario({"target": target, "workload": workload, "phases": PHASES}, base_dir=base_dir)


def problems(workload: dict, base_dir=None, **target) -> list[str]:
    with pytest.raises(ScenarioError) as error:
        scenario(workload, base_dir, **target)
    return error.value.problems


MIXED = {"prompts": ["a", "b"], "seed": 10, "steps": 2, "size": "64x64", "slo": {"latency": "10s"},
         "classes": {"preview": {"weight": 3, "size": "96x96", "slo": {"latency": "2s", "ttfr": "500ms"}},
                     "final": {"weight": 1, "steps": 8, "prompts": ["c"], "prompts_per_request": 2}}}


def test_classes_take_the_workloads_settings_unless_they_give_their_own():
    workload = scenario(MIXED).workload
    preview, final = workload.classes["preview"], workload.classes["final"]
    assert (preview.weight, preview.settings.steps, preview.settings.height, preview.settings.prompts) == (
        3, 2, 96, ["a", "b"])
    assert (final.settings.steps, final.settings.height, final.settings.prompts) == (8, 64, ["c"])
    assert final.settings.prompts_per_request == {2: 1.0} and preview.settings.prompts_per_request == {1: 1.0}
    assert preview.settings.slo.latency_ms == 2000 and preview.settings.slo.ttfr_ms == 500
    assert workload.slo_of("final").latency_ms == 10000  # inherited
    assert workload.slo_of("from-a-trace") == workload.slo and workload.slo_of(None) == workload.slo
    assert not workload.classes["final"].settings.classes  # a class has no classes of its own


def test_classes_are_drawn_by_weight_reproducibly_with_their_own_settings():
    workload = scenario(MIXED).workload
    jobs = _draw(workload, 2000)
    counts = collections.Counter(j.request_class for j in jobs)
    assert 0.70 < counts["preview"] / 2000 < 0.80
    for job in jobs:
        if job.request_class == "final":
            assert job.prompts == ("c", "c") and job.steps == 8 and job.height == 64 and job.seeds == (10, 10)
        else:
            assert len(job.prompts) == 1 and job.steps == 2 and job.height == 96
    assert [j.request_class for j in _draw(workload, 50)] == [j.request_class for j in _draw(workload, 50)]


def _draw(workload, n):
    source = JobSource(workload)
    return [source.next() for _ in range(n)]


def test_without_classes_the_draw_is_unchanged():
    workload = scenario({"prompts": ["a", "b", "c"], "seed": 1, "prompts_per_request": {1: 1, 2: 1}}).workload
    jobs = _draw(workload, 20)
    assert {j.request_class for j in jobs} == {None}
    assert [j.prompts for j in jobs] == [j.prompts for j in _draw(workload, 20)]


def test_every_class_problem_is_named_with_its_path():
    found = problems({"prompts": ["a"], "classes": {
        "preview": {"size": "33x33", "slo": {"latency": "-1s"}},
        "bad name": {"weight": 1},
        "final": {"weight": 0, "steps": 0, "seed": 3, "slo": {}}}})
    text = "\n".join(found)
    assert "workload.classes.preview.slo: needs" not in text  # its bad latency is the one problem
    for expected in ("workload.classes.preview.weight: is required",
                     "workload.classes.preview.height: must be a multiple of",
                     "workload.classes.preview.slo.latency", "workload.classes.bad name: a class name uses only",
                     "workload.classes.final.weight: must be a number > 0", "workload.classes.final.steps",
                     "workload.classes.final.seed: unknown key", "workload.classes.final.slo: needs at least one"):
        assert expected in text, text


def test_a_workload_needs_prompts_unless_every_class_has_its_own():
    assert "workload.prompts: must be a non-empty list" in "\n".join(problems({"classes": {
        "a": {"weight": 1, "prompts": ["x"]}, "b": {"weight": 1}}}))
    workload = scenario({"classes": {"a": {"weight": 1, "prompts": ["x"]},
                                     "b": {"weight": 1, "prompts": ["y"]}}}).workload
    assert workload.prompts == ["x", "y"]


def test_a_class_asking_what_the_protocol_cannot_do_is_named():
    found = problems({"prompts": ["a"], "classes": {"big": {"weight": 1, "prompts_per_request": 2}}},
                     url="http://x:1", protocol="nim")
    assert any(p.startswith("workload.classes.big.prompts_per_request: protocol nim sends one prompt") for p in found)
    found = problems({"prompts": ["a"], "max_sequence_length": 256, "classes": {"a": {"weight": 1}}},
                     url="http://x:1", protocol="nim")
    assert [p for p in found if "max_sequence_length" in p] == [
        "workload.max_sequence_length: protocol nim has no such setting (leave it out)"]  # once, not per class


@pytest.mark.parametrize("name, text", [
    ("p.txt", "a red bicycle\n\n  a lighthouse  \n"),
    ("p.jsonl", '{"prompt": "a red bicycle", "class": "x"}\n\n{"prompt": " a lighthouse "}\n'),
    ("p.csv", 'id,prompt\n1,a red bicycle\n2,"a lighthouse"\n3,\n')])
def test_prompt_files_in_three_formats(tmp_path, name, text):
    (tmp_path / name).write_text(text)
    assert scenario({"prompts_file": name}, tmp_path).workload.prompts == ["a red bicycle", "a lighthouse"]
    classes = scenario({"prompts": ["z"], "classes": {"c": {"weight": 1, "prompts_file": name}}}, tmp_path)
    assert classes.workload.classes["c"].settings.prompts == ["a red bicycle", "a lighthouse"]


@pytest.mark.parametrize("name, text, message", [
    ("p.jsonl", '{"prompt": "a"}\nnot json\n', "line 2: not JSON"),
    ("p.jsonl", '{"prompt": "a"}\n{"text": "b"}\n', "line 2: needs a non-empty string field 'prompt'"),
    ("p.csv", "id,text\n1,a\n", "line 1: needs a 'prompt' column (its columns: id, text)"),
    ("p.txt", "\n\n", "holds no prompts")])
def test_a_bad_prompt_file_names_the_line(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    found = "\n".join(problems({"prompts_file": name}, tmp_path))
    assert "workload.prompts_file: cannot read" in found or "workload.prompts_file:" in found
    assert message in found, found


def test_size_is_width_by_height_as_openai_and_traces_have_it():
    workload = scenario({"prompts": ["a"], "size": "512x256", "classes": {"wide": {"weight": 1, "size": "128x64"}}})
    assert (workload.workload.width, workload.workload.height) == (512, 256)
    wide = workload.workload.classes["wide"].settings
    assert (wide.width, wide.height) == (128, 64)
