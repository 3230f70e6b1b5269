"""`capacity`: the search finds a known capacity; the command writes its JSON and plot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from flux_async.run.runner import RunOptions, run_capacity
from flux_async.scenario.config import parse_scenario

ROOT = Path(__file__).resolve().parents[2]
SLEEPER = ROOT / "tests" / "fixtures" / "sleep_repository"


async def test_search_finds_one_over_the_service_time(sleeper_server, tmp_path):
    """One instance, 100 ms per request: the capacity is 10 requests/s; the search must land within ±15 %."""
    scenario = parse_scenario({
        "name": "sleeper", "target": {"url": sleeper_server.grpc_url, "model": "sleeper"},
        "workload": {"prompts": ["a"], "size": "64x64"}, "verify": False,
        "capacity": {"start": 2, "max": 40, "step_duration": "3s", "min_requests": 10, "repeats": 1,
                     "precision": 0.1, "warmup": False}})
    report, code = await run_capacity(scenario, RunOptions(report=tmp_path / "c.json"), ["p(99) < 300ms"], {},
                                      Console(file=open(tmp_path / "out.txt", "w"), width=160))
    capacity = report["capacity"]
    assert code == 0 and report["passed"]
    assert 8.5 <= capacity["max_rate_per_s"] <= 11.5, capacity["max_rate_per_s"]
    assert capacity["bounded_by"] == "the SLO" and capacity["lowest_failing_load"] > capacity["max_rate_per_s"]
    loads = [s["load"] for s in capacity["steps"]]
    assert loads[:4] == [2, 4, 8, 16]  # doubling until the first failure, then bisection
    assert capacity["knee"]["passed"] and capacity["knee"]["load"] == capacity["max_rate_per_s"]
    assert json.loads((tmp_path / "c.json").read_text())["capacity"]["max_rate_per_s"] == capacity["max_rate_per_s"]


async def test_two_servers_behind_one_target_double_the_capacity(tiny_weights, tmp_path):
    """The multi-GPU layout on a CPU: a fleet of two sleeper servers (one per "GPU"), load spread by least in flight.
    Each serves 10 requests/s, so the search must find ~20/s, and both servers must have taken a fair share."""
    import tritonclient.grpc as grpcclient

    from flux_async.launch.fleet import ServerFleet
    from flux_async.launch.triton_server import ServerConfig

    with ServerFleet(["0", "1"], ServerConfig(model_repository=SLEEPER, weights=str(tiny_weights))) as fleet:
        scenario = parse_scenario({
            "name": "sleeper-fleet", "target": {"urls": fleet.grpc_urls, "model": "sleeper",
                                                "balance": "least-in-flight"},
            "workload": {"prompts": ["a"], "size": "64x64"}, "verify": False,
            "capacity": {"start": 8, "max": 80, "step_duration": "2s", "min_requests": 20, "repeats": 1,
                         "precision": 0.1, "warmup": False}})
        report, code = await run_capacity(scenario, RunOptions(), ["p(99) < 300ms"], {},
                                          Console(file=open(tmp_path / "out.txt", "w"), width=160))
        counts = [int(grpcclient.InferenceServerClient(url).get_inference_statistics("sleeper")
                      .model_stats[0].inference_count) for url in fleet.grpc_urls]
    capacity = report["capacity"]
    assert code == 0 and capacity["bounded_by"] == "the SLO"
    assert 17 <= capacity["max_rate_per_s"] <= 23, capacity["max_rate_per_s"]
    assert min(counts) >= 0.4 * sum(counts), counts
    assert report["target"]["url"] == ",".join(f"grpc://{url}" for url in fleet.grpc_urls)


async def test_capacity_command_prints_steps_and_writes_json_plot_and_html(triton_server, tmp_path, inspect_html):
    result = subprocess.run([sys.executable, "-m", "flux_async", "capacity", "scenarios/capacity.yaml", "--slo",
                             "p(99) < 2s", "--url", triton_server.grpc_url, "--step-duration", "2", "--repeats", "1",
                             "--start", "2", "--max", "4", "--report", str(tmp_path / "cap.json"),
                             "--plot", str(tmp_path / "cap.png"), "--html", str(tmp_path / "cap.html")],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "cap.json").read_text())
    capacity = report["capacity"]
    assert capacity["max_rate_per_s"] > 0 and capacity["steps"] and capacity["slo"][0] == "p(99) < 2s"
    assert all({"rate_per_s", "latency_ms", "throughput", "passed", "stages", "client"} <= set(s)
               for s in capacity["steps"])
    assert report["client"]["parts"] == len(capacity["steps"])  # every step's tester verdict, combined
    assert report["client"]["saturated"] == any(s["client"]["saturated"] for s in capacity["steps"])
    assert "capacity search" in result.stdout and "capacity: " in result.stdout
    assert (tmp_path / "cap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = await inspect_html(tmp_path / "cap.html", "html-report-capacity")
    assert page["errors"] == [] and page["verdict"] == "PASSED" and page["reasons"][0].startswith("capacity ")
    assert [name for name, width in page["charts"] if width > 300] == ["capacity"]
    assert page["capacityRows"] == len(capacity["steps"]) and page["scrollWidth"] <= 1280


def test_capacity_says_it_has_no_workers(tmp_path):
    result = subprocess.run([sys.executable, "-m", "flux_async", "capacity", "scenarios/capacity.yaml", "--workers",
                             "2"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--workers must be 1" in result.stderr and "one process" in result.stderr


def test_capacity_without_an_slo_is_a_usage_error(tmp_path):
    (tmp_path / "s.yaml").write_text("workload: {prompts: [a]}\ncapacity: {start: 1}\n")
    result = subprocess.run([sys.executable, "-m", "flux_async", "capacity", str(tmp_path / "s.yaml")], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and "--slo" in result.stderr
