"""Request classes in what a run reports: figures per class (phases and the whole run), class-scoped thresholds,
goodput against each class's own SLO, class tags in the .hlog, the HTML table, the merge of --workers, and capacity
searching on goodput. Real runs of the CLI against the fake target (20 ms per request)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from flux_async.errors import EXIT_FAILED, EXIT_USAGE, ScenarioError, UsageError
from flux_async.report.hlog import read_log
from flux_async.run.runner import RunOptions, run_capacity
from flux_async.scenario.config import parse_scenario

# previews must answer in 5 ms (the fake takes 20: none meet it), finals in 1 s (all do)
WORKLOAD = {"prompts": ["a", "b"], "size": "64x64", "slo": {"latency": "1s"},
            "classes": {"preview": {"weight": 3, "slo": {"latency": "5ms"}}, "final": {"weight": 1, "steps": 8}}}
SCENARIO = {
    "name": "mixed-fake", "target": {"url": "fake://?latency=20ms"}, "verify": False, "workload": WORKLOAD,
    "phases": [{"name": "warm", "executor": "constant-arrival-rate", "rate": "20/s", "duration": "1s",
                "warmup": True},
               {"name": "steady", "executor": "constant-arrival-rate", "rate": "60/s", "duration": "2s",
                "thresholds": ["error_rate{class=final} == 0"]}],
    "thresholds": ["p(99){class=preview} < 10ms", "p(99){class=final} < 1s", "goodput{class=final} > 99%",
                   "goodput < 50%"]}


def _run(folder: Path, scenario: dict, *flags: str) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "s.yaml").write_text(json.dumps(scenario))  # JSON is YAML
    return subprocess.run([sys.executable, "-m", "flux_async", "run", str(folder / "s.yaml"), "--no-progress",
                           "--report", str(folder / "r.json"), "--hlog", str(folder / "r.hlog"),
                           "--html", str(folder / "r.html"), *flags],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mixed")
    done = _run(folder, SCENARIO)
    return folder, done, json.loads((folder / "r.json").read_text())


def test_every_phase_figure_is_also_given_per_class(mixed):
    _, _, report = mixed
    steady = report["phases"][1]
    phase_keys = set(steady) - {"name", "executor", "warmup", "finished", "classes"}
    for scope in (steady, report):
        assert set(scope["classes"]) == {"preview", "final"}
        for figures in scope["classes"].values():
            assert phase_keys <= set(figures), phase_keys - set(figures)
        for count in ("sent", "ok", "errors", "dropped"):
            assert sum(c["requests"][count] for c in scope["classes"].values()) == scope["requests"][count]
    # the warm-up is left out of the top level
    assert report["classes"]["final"]["requests"]["sent"] == steady["classes"]["final"]["requests"]["sent"]
    share = steady["classes"]["preview"]["requests"]["sent"] / steady["requests"]["sent"]
    assert 0.6 < share < 0.9  # weight 3 of 4
    assert report["phases"][0]["classes"]["preview"]["requests"]["sent"] > 0  # the warm-up has its own


def test_a_class_scoped_threshold_fails_only_its_class(mixed):
    _, done, report = mixed
    assert done.returncode == EXIT_FAILED and report["passed"] is False
    verdicts = {t["expr"]: t["ok"] for t in report["thresholds"]}
    assert verdicts["p(99){class=preview} < 10ms"] is False and verdicts["p(99){class=final} < 1s"] is True
    assert [t["ok"] for t in report["classes"]["preview"]["thresholds"]] == [False]
    assert all(t["ok"] for t in report["classes"]["final"]["thresholds"])
    phase_final = report["phases"][1]["classes"]["final"]
    assert [t["expr"] for t in phase_final["thresholds"]] == ["error_rate{class=final} == 0"]
    assert "✗ p(99){class=preview} < 10ms" in done.stdout and "✓ p(99){class=final} < 1s" in done.stdout


def test_goodput_counts_each_request_against_its_own_classes_slo(mixed):
    _, done, report = mixed
    classes = report["classes"]
    assert classes["preview"]["goodput"] == 0.0 and classes["final"]["goodput"] == 1.0
    finals = classes["final"]["requests"]["sent"] / report["requests"]["sent"]
    assert report["goodput"] == pytest.approx(finals, abs=1e-3)
    assert report["goodput_per_s"] == pytest.approx(classes["final"]["throughput"]["requests_per_s"], rel=0.01)
    assert classes["preview"]["slo"] == "latency <= 5 ms" and classes["final"]["slo"] == "latency <= 1000 ms"
    assert f"goodput: {100 * report['goodput']:.2f}% of requests" in done.stdout


def test_the_hlog_tags_and_the_html_table_carry_the_class(mixed):
    folder, _, report = mixed
    counts: dict[str, int] = {}
    for _, _, tag, histogram in read_log(folder / "r.hlog"):
        counts[tag] = counts.get(tag, 0) + histogram.get_total_count()
    for name in ("preview", "final"):
        assert counts[f"steady:latency{{class={name}}}"] == report["phases"][1]["classes"][name]["requests"]["ok"]
    page = (folder / "r.html").read_text()
    assert 'id="class-table"' in page and 'data-class="preview"' in page and 'id="goodput"' in page


def test_workers_merge_their_classes(tmp_path):
    done = _run(tmp_path, SCENARIO, "--workers", "2")
    report = json.loads((tmp_path / "r.json").read_text())
    assert done.returncode == EXIT_FAILED, done.stderr
    assert set(report["classes"]) == {"preview", "final"}
    for count in ("sent", "ok"):
        assert sum(c["requests"][count] for c in report["classes"].values()) == report["requests"][count]
    assert report["classes"]["final"]["goodput"] == 1.0 and report["classes"]["preview"]["goodput"] == 0.0
    assert [t["ok"] for t in report["thresholds"][:2]] == [False, True]


def test_without_an_slo_there_is_no_goodput(tmp_path):
    plain = {**SCENARIO, "workload": {"prompts": ["a"]}, "thresholds": [], "phases": SCENARIO["phases"][:1]}
    plain["phases"] = [{**plain["phases"][0], "warmup": False}]
    _run(tmp_path, plain)
    report = json.loads((tmp_path / "r.json").read_text())
    assert "goodput" not in report and not report.get("classes")


@pytest.mark.parametrize("where", ["scenario", "phase"])
def test_a_threshold_naming_an_unknown_class_is_a_scenario_error(where):
    scenario = json.loads(json.dumps(SCENARIO))
    target = scenario if where == "scenario" else scenario["phases"][1]
    target["thresholds"] = ["p(99){class=finale} < 1s"]
    with pytest.raises(ScenarioError) as error:
        parse_scenario(scenario)
    assert "finale" in str(error.value) and "preview" in str(error.value)


CAPACITY = {**{k: v for k, v in SCENARIO.items() if k != "phases"}, "thresholds": [],
            "capacity": {"start": 4, "max": 8, "step_duration": "1s", "min_requests": 2, "repeats": 1,
                         "warmup": False}}


async def test_capacity_searches_on_a_classes_goodput():
    options = RunOptions(progress=False, verify=False)
    report, code = await run_capacity(parse_scenario(CAPACITY), options, ["goodput{class=final} > 95%"], {},
                                      Console(file=io.StringIO()))
    assert code == 0 and report["capacity"]["max_rate_per_s"] == 8
    report, code = await run_capacity(parse_scenario(CAPACITY), options, ["goodput > 95%"], {},
                                      Console(file=io.StringIO()))
    assert code == EXIT_FAILED and not report["capacity"]["max_rate_per_s"]  # previews never meet 5 ms
    step = report["capacity"]["steps"][0]
    assert [t["expr"] for t in step["slo"] if not t["ok"]] == ["goodput > 95%"] and 0 < step["goodput"] < 1


async def test_capacity_refuses_an_slo_on_an_unknown_class():
    with pytest.raises(UsageError) as error:
        await run_capacity(parse_scenario(CAPACITY), RunOptions(progress=False, verify=False),
                           ["p(99){class=nope} < 1s"], {}, Console(file=io.StringIO()))
    assert error.value.exit_code == EXIT_USAGE and "nope" in str(error.value)
