"""The tester under failure: a server killed mid-run, faults injected on purpose (only with --allow-faults), and
scenarios that try to run code."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from flux_async.launch.triton_server import TritonServer

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = ROOT / "tests" / "fixtures" / "sleep_repository"
STEADY_ON_SLEEPER = {"target": {"model": "sleeper", "request_timeout": "10s"}, "verify": False,
                     "workload": {"prompts": ["a"], "size": "64x64"},
                     "phases": [{"name": "steady", "executor": "constant-arrival-rate", "rate": "5/s",
                                 "duration": "60s"}]}


def run_cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "flux_async", "run", *args, "--no-progress"], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def test_a_server_killed_mid_run_ends_the_run_with_a_complete_report(tmp_path, tiny_weights):
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(STEADY_ON_SLEEPER))
    server = TritonServer(model_repository=SLEEPER, weights=str(tiny_weights)).start()
    killer = threading.Timer(4.0, server.kill)
    killer.start()
    started = time.perf_counter()
    try:
        result = run_cli(str(tmp_path / "s.yaml"), "--url", server.grpc_url, "--report", str(tmp_path / "r.json"),
                         "--hlog", str(tmp_path / "r.hlog"))
    finally:
        killer.cancel()
        server.stop()
    elapsed = time.perf_counter() - started
    assert result.returncode == 1, result.stdout + result.stderr
    assert elapsed < 4 + 10 + 15  # the kill, the request timeout, and start-up: not the phase's 60 s
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] and "target lost" in report["stop_reason"]
    assert report["requests"]["ok"] > 5 and report["requests"]["errors"] > 0
    assert set(report["errors_by_kind"]) <= {"UNAVAILABLE", "cancelled", "timeout"}
    assert "target lost" in result.stdout
    log = (tmp_path / "r.hlog").read_text()
    assert log.count("Tag=steady:latency") >= 3 and log.rstrip().splitlines()[-1].startswith("Tag=")


def test_faults_need_allow_faults(tmp_path):
    result = run_cli("scenarios/faults.yaml", "--url", "localhost:1")
    assert result.returncode == 2 and "--allow-faults" in result.stderr


def test_unload_fault_reports_its_window_and_recovery(triton_server, tmp_path):
    """scenarios/faults.yaml against the session server, its fault and run shortened (the reload took 7 s here; the
    run leaves 12 s after the revert): t5_encoder unloaded, bls names it, then reloaded."""
    scenario = yaml.safe_load((ROOT / "scenarios" / "faults.yaml").read_text())
    scenario["faults"][0] |= {"at": "3s", "duration": "3s"}
    scenario["phases"][0]["duration"] = "25s"
    # the error rate depends on how long the reload takes (7 s alone, 17 s beside another test on two cores): the
    # shipped scenario's error budget is not what this test checks (without one, the default is no error at all)
    scenario["thresholds"] = [t for t in scenario["thresholds"] if not t.startswith("error_rate")] + [
        "error_rate < 100%"]
    (tmp_path / "faults.yaml").write_text(yaml.safe_dump(scenario))
    result = run_cli(str(tmp_path / "faults.yaml"), "--url", triton_server.grpc_url, "--control-url",
                     f"http://{triton_server.http_url}", "--allow-faults",
                     "--report", str(tmp_path / "r.json"), timeout=600)
    report = json.loads((tmp_path / "r.json").read_text())
    [fault] = report["faults"]
    assert fault["error"] is None and fault["applied_s"] >= 3 and fault["reverted_s"] > fault["applied_s"]
    assert fault["errors_in_window"] > 0 and set(fault["errors_by_kind_in_window"]) == {"UNAVAILABLE"}
    assert fault["recovery_s"] is not None and fault["recovery_s"] >= fault["revert_took_s"] * 0.5, (fault,
                                                                                                   result.stdout)
    assert "FAULT unload t5_encoder" in result.stdout and result.returncode == 0, result.stdout
    assert triton_server.is_ready()


def test_kill_server_fault_on_the_embedded_server(tmp_path):
    """kill-server: the embedded server is SIGKILLed and restarted on the same ports; the run recovers."""
    scenario = dict(STEADY_ON_SLEEPER, phases=[dict(STEADY_ON_SLEEPER["phases"][0], duration="14s")],
                    faults=[{"action": "kill-server", "at": "3s", "duration": "2s"}],
                    thresholds=["error_rate < 80%"])
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    result = run_cli(str(tmp_path / "s.yaml"), "--model-repository", str(SLEEPER), "--allow-faults",
                     "--report", str(tmp_path / "r.json"), timeout=600)
    assert (tmp_path / "r.json").is_file(), f"exit {result.returncode}:\n{result.stdout}\n{result.stderr}"
    report = json.loads((tmp_path / "r.json").read_text())
    [fault] = report["faults"]
    assert fault["error"] is None and fault["recovery_s"] is not None, fault
    assert report["requests"]["errors"] > 0 and not report["interrupted"]
    assert result.returncode == 0, result.stdout + result.stderr


def test_scenarios_cannot_run_code(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "evil.yaml").write_text(f'name: !!python/object/apply:os.system ["touch {marker}"]\n'
                                        "workload: {prompts: [a]}\nphases: []\n")
    result = run_cli(str(tmp_path / "evil.yaml"))
    assert result.returncode == 2 and "not valid YAML" in result.stderr
    assert not marker.exists()
