"""`python -m flux_async run`: every shipped scenario end to end against the real server for a few seconds, the
embedded server, and the exit codes (docs/cli.md)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader
from test_serve import launched_by, shm_segments, triton_processes  # pytest puts tests/integration on sys.path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flux_async", "run", *args, "--no-progress"], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def url_for(server, protocol: str) -> str:
    return f"http://{server.http_url}" if protocol == "http" else f"grpc://{server.grpc_url}"


@pytest.mark.parametrize("name, protocol", [("steady", "grpc"), ("ramp", "grpc"), ("stream", "grpc-stream"),
                                            ("http", "http")])
def test_scenario_runs_against_the_server(name, protocol, triton_server, tmp_path):
    report_path, hlog_path = tmp_path / "report.json", tmp_path / "run.hlog"
    result = run_cli(f"scenarios/{name}.yaml", "--url", url_for(triton_server, protocol), "--duration", "4",
                     "--report", str(report_path), "--hlog", str(hlog_path))
    check_scenario_run(name, protocol, result, report_path, hlog_path)


def test_mixed_classes_are_reported_and_verified_each_on_their_own(triton_server, tmp_path):
    """scenarios/mixed.yaml for 8 s: previews (128², 2 steps) and finals (256², 4 steps, prompts from a file) drawn
    3:1, each class's counts, verification and goodput reported apart and adding up to the phase's."""
    report_path, hlog_path = tmp_path / "report.json", tmp_path / "run.hlog"
    result = run_cli("scenarios/mixed.yaml", "--url", url_for(triton_server, "grpc"), "--duration", "8",
                     "--report", str(report_path), "--hlog", str(hlog_path))
    check_scenario_run("mixed", "grpc", result, report_path, hlog_path)
    report = json.loads(report_path.read_text())
    finals = (ROOT / "scenarios/prompts/finals.txt").read_text().splitlines()
    for phase in report["phases"]:
        classes = phase["classes"]
        assert sum(c["requests"]["sent"] for c in classes.values()) == phase["requests"]["sent"]
        assert sum(c["verification"]["checked"] for c in classes.values()) == phase["verification"]["checked"]
    measured = report["classes"]
    assert set(measured) == {"preview", "final"}, measured.keys()
    for name in ("preview", "final"):
        assert measured[name]["requests"]["ok"] > 0 and measured[name]["verification"]["checked"] > 0
        assert measured[name]["verification"]["mismatches"] == 0 and measured[name]["goodput"] == 1.0
    assert measured["final"]["service_time_ms"]["p50"] > measured["preview"]["service_time_ms"]["p50"]  # 4x pixels
    assert report["goodput"] == 1.0 and len(finals) == 4
    assert "request classes" in result.stdout and "goodput: 100.00%" in result.stdout


def test_the_burst_scenario_runs_against_the_server(burst_run):
    """The main job, as the other shipped scenarios above: the session's burst_run (tests/integration/conftest.py),
    whose HTML page test_html_report reads."""
    check_scenario_run("burst", "grpc", burst_run.result, burst_run.folder / "r.json", burst_run.folder / "r.hlog")


def check_scenario_run(name: str, protocol: str, result: subprocess.CompletedProcess, report_path: Path,
                       hlog_path: Path) -> None:
    """`run scenarios/<name>.yaml --duration 4` passed, and its report, console and interval log agree."""
    assert result.returncode == 0, result.stdout + result.stderr  # the shipped thresholds hold on this machine
    report = json.loads(report_path.read_text())
    scenario = yaml.safe_load((ROOT / "scenarios" / f"{name}.yaml").read_text())
    assert report["scenario"] == name and report["target"]["protocol"] == protocol
    assert report["target"]["model"] == ("bls_stream" if protocol == "grpc-stream" else "bls")
    assert [p["name"] for p in report["phases"]] == [p["name"] for p in scenario["phases"]]
    measured = [p for p in report["phases"] if not p["warmup"]]
    assert report["requests"]["sent"] == sum(p["requests"]["sent"] for p in measured) > 0
    assert report["requests"]["errors"] == 0 and report["errors_by_kind"] == {}
    assert report["requests"]["ok"] > 0 and report["images"]["ok"] >= report["requests"]["ok"]
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"] <= report["latency_ms"]["max"]
    assert report["service_time_ms"]["p50"] <= report["latency_ms"]["p99"]
    if protocol == "grpc-stream":
        ttfr = report["time_to_first_response_ms"]
        assert 0 < ttfr["p50"] < report["latency_ms"]["p50"]  # the first step arrives before the image
    assert "flux_async · " + name in result.stdout and "PASSED" in result.stdout and report["passed"]
    reader = HistogramLogReader(str(hlog_path), HdrHistogram(1, 3_600_000_000, 3))
    logged = 0
    while (histogram := reader.get_next_interval_histogram()) is not None:
        if histogram.get_tag().endswith(":latency"):
            logged += histogram.get_total_count()
    assert logged == sum(p["requests"]["ok"] for p in report["phases"])


def test_main_job_with_two_workers_verifies_every_image_of_both(triton_server, tmp_path):
    """`run scenarios/burst.yaml --workers 2` against the session server: two workers share the main job, and one
    merged report's counts add up and its verification covers both workers' images (exit 0)."""
    result = run_cli("scenarios/burst.yaml", "--url", url_for(triton_server, "grpc"), "--workers", "2",
                     "--duration", "1", "--report", str(tmp_path / "r.json"), "--html", str(tmp_path / "r.html"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["workers"] == 2 and not report["embedded_server"] and report["passed"]
    bursts = next(p for p in report["phases"] if p["name"] == "bursts")
    # one burst of 6 in 1 s, 3 per worker (a second would only wait its 8 s: the split is per burst)
    assert bursts["requests"]["sent"] == 6 == report["requests"]["sent"]
    assert report["requests"]["ok"] == report["requests"]["sent"] and report["images"]["ok"] >= 6
    verification = report["verification"]
    assert verification["workers"] == 2 and verification["mismatches"] == 0
    warm_up = next(p for p in report["phases"] if p["name"] == "warm-up")
    assert verification["checked"] == report["images"]["ok"] + warm_up["images"]["ok"]  # every image, both workers
    assert report["client"]["parts"] == 2 and report["client"]["requests"] == 6 + 4
    assert (tmp_path / "r.html").is_file()


def test_two_workers_share_an_embedded_server_and_leave_nothing_behind(tmp_path):
    """`run --workers 2` with no URL: one embedded Triton (here on the stand-in repository, whose bls answers at
    once, so the start costs seconds, not the FLUX models' load) is shared by both workers; once the run ends, no
    tritonserver or python-backend stub and no /dev/shm segment of it is left. The FLUX models' own embedded start
    runs in test_failures' kill-server test."""
    process = subprocess.Popen([sys.executable, "-m", "flux_async", "run", "scenarios/burst.yaml", "--workers", "2",
                                "--duration", "1", "--no-verify", "--no-progress", "--model-repository",
                                str(ROOT / "tests/fixtures/stand_in_repository"), "--report", str(tmp_path / "r.json")],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stdout + stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["workers"] == 2 and report["embedded_server"] and report["passed"]
    assert "starting an embedded Triton server" in stdout
    assert report["requests"]["sent"] == report["requests"]["ok"] == 6
    assert report["client"]["parts"] == 2
    marker = launched_by(process.pid)  # the parent started the embedded server
    assert triton_processes(marker) == set(), "the embedded server's stubs outlived the run"
    assert shm_segments(marker) == set(), "the embedded server left /dev/shm segments behind"


def test_bad_scenario_exits_2_listing_every_problem(tmp_path):
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({
        "workload": {"prompts": []}, "phases": [{"executor": "warp-speed"}], "thresholds": ["p99 < 1"]}))
    result = run_cli(str(tmp_path / "bad.yaml"))
    assert result.returncode == 2
    for text in ("workload.prompts:", "phases[0].executor:", "thresholds[0]:"):
        assert text in result.stderr, result.stderr


def test_bad_flag_exits_2():
    assert run_cli("scenarios/burst.yaml", "--duration", "-1").returncode == 2
    assert run_cli("scenarios/burst.yaml", "--url", "ftp://x:1").returncode == 2


def test_unreachable_url_exits_3():
    result = run_cli("scenarios/steady.yaml", "--url", "grpc://127.0.0.1:1", timeout=120)
    assert result.returncode == 3 and "unreachable" in result.stdout


def test_failed_threshold_exits_1(tmp_path):
    scenario = {"target": {"url": "fake://?latency=50ms"}, "workload": {"prompts": ["a"]},
                "phases": [{"executor": "constant-concurrency", "concurrency": 1, "requests": 3}],
                "thresholds": ["p(99) < 1ms"]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    result = run_cli(str(tmp_path / "s.yaml"), "--report", str(tmp_path / "r.json"))
    assert result.returncode == 1
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["thresholds"][0] == {"expr": "p(99) < 1ms", "value": pytest.approx(50, rel=0.5), "ok": False}


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_still_writes_its_report_and_log(tmp_path, stop_signal):
    scenario = {"target": {"url": "fake://?latency=20ms"}, "workload": {"prompts": ["a"]},
                "phases": [{"executor": "constant-arrival-rate", "rate": "20/s", "duration": "120s"}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    process = subprocess.Popen([sys.executable, "-m", "flux_async", "run", str(tmp_path / "s.yaml"), "--no-progress",
                                "--report", str(tmp_path / "r.json"), "--hlog", str(tmp_path / "r.hlog")], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(4)
    process.send_signal(stop_signal)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 1, out + err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] and not report["passed"] and report["requests"]["ok"] > 10
    assert "Tag=phase-1:latency" in (tmp_path / "r.hlog").read_text()


def test_workers_share_the_load_and_merge_exactly(tmp_path):
    """--workers 2: every phase's load split in two processes; the merged report counts everything once, and its
    percentiles equal those of the merged interval logs (HDR histograms add exactly)."""
    from flux_async.measure.recorder import summarize_ms
    from flux_async.report.hlog_merge import merge_logs

    scenario = {"target": {"url": "fake://?latency=10ms"}, "workload": {"prompts": ["a", "b"]},
                "phases": [{"name": "steady", "executor": "constant-arrival-rate", "rate": "40/s", "duration": "2s"},
                           {"name": "closed", "executor": "constant-concurrency", "concurrency": 4,
                            "requests": 40}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    result = run_cli(str(tmp_path / "s.yaml"), "--workers", "2", "--report", str(tmp_path / "r.json"),
                     "--hlog", str(tmp_path / "r.hlog"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["workers"] == 2
    assert [(p["name"], p["requests"]["sent"]) for p in report["phases"]] == [("steady", 80), ("closed", 40)]
    merged = merge_logs([tmp_path / "r.hlog"])
    latency = merged.totals["steady:latency"]
    latency.add(merged.totals["closed:latency"])
    assert latency.get_total_count() == report["requests"]["ok"] == 120
    assert summarize_ms(latency) == report["latency_ms"]


def test_workers_refuse_a_load_too_small_to_split(tmp_path):
    scenario = {"target": {"url": "fake://"}, "workload": {"prompts": ["a"]},
                "phases": [{"executor": "constant-concurrency", "concurrency": 1, "requests": 4}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    result = run_cli(str(tmp_path / "s.yaml"), "--workers", "2")
    assert result.returncode == 2 and "cannot be split over 2 workers" in result.stderr


def test_report_merge_command(tmp_path):
    scenario = {"target": {"url": "fake://?latency=5ms"}, "workload": {"prompts": ["a"]},
                "phases": [{"name": "p", "executor": "constant-concurrency", "concurrency": 2, "requests": 30}]}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    for agent in ("a", "b"):
        assert run_cli(str(tmp_path / "s.yaml"), "--hlog", str(tmp_path / f"{agent}.hlog")).returncode == 0
    result = subprocess.run([sys.executable, "-m", "flux_async", "report", "merge", str(tmp_path / "a.hlog"),
                             str(tmp_path / "b.hlog"), "--output", str(tmp_path / "m.hlog"), "--json",
                             str(tmp_path / "m.json")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    merged = json.loads((tmp_path / "m.json").read_text())
    assert merged["tags"]["p:latency"]["count"] == 60 and "p:latency" in result.stdout
    reader = HistogramLogReader(str(tmp_path / "m.hlog"), HdrHistogram(1, 3_600_000_000, 3))
    count = 0
    while (histogram := reader.get_next_interval_histogram()) is not None:
        count += histogram.get_total_count() if histogram.get_tag() == "p:latency" else 0
    assert count == 60
