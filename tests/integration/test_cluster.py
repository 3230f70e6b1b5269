"""`run --cluster --agents` on a real local Ray cluster (the session's `ray_cluster`: a head with no CPUs and two
worker nodes of one CPU each, separate processes with token auth): the load spread over the nodes, per-agent counts
adding up, the merged percentiles equal to those of every sample, references computed once by the coordinator, a
node lost mid-run recorded while the run goes on, Ctrl-C still writing the merged report, and a cluster that cannot
place the agents exiting 3."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from flux_async.measure.recorder import new_histogram, summarize_ms
from flux_async.report.hlog import read_log

ROOT = Path(__file__).resolve().parents[2]
FAKE = {"name": "cluster", "target": {"url": "fake://?latency=20ms"}, "verify": False,
        "workload": {"prompts": ["a", "b"], "size": "64x64", "classes": {"preview": {"weight": 3},
                                                                      "final": {"weight": 1, "steps": 8}}},
        "phases": [{"name": "warm", "executor": "constant-arrival-rate", "rate": "10/s", "duration": "1s",
                    "warmup": True},
                   {"name": "steady", "executor": "constant-arrival-rate", "rate": "40/s", "duration": "3s"}],
        "thresholds": ["p(99) < 1s"]}


def command(folder: Path, scenario: dict, address: str, *flags: str) -> list[str]:
    (folder / "s.yaml").write_text(yaml.safe_dump(scenario))
    return [sys.executable, "-m", "flux_async", "run", str(folder / "s.yaml"), "--cluster", address, "--agents", "2",
            "--no-progress", "--report", str(folder / "r.json"), "--hlog", str(folder / "r.hlog"), *flags]


def run(cluster, folder: Path, scenario: dict, *flags: str, address: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(command(folder, scenario, address or cluster.address, *flags), cwd=ROOT, env=cluster.env,
                          capture_output=True, text=True, timeout=240)


def started(cluster, cmd: list[str]) -> subprocess.Popen:
    """`cmd` running, read up to its line saying where the agents are (they start two seconds after it)."""
    process = subprocess.Popen(cmd, cwd=ROOT, env=cluster.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if "agents on" in line:
            break
    return process


def test_agents_spread_over_the_nodes_and_merge_exactly(ray_cluster, tmp_path):
    result = run(ray_cluster, tmp_path, FAKE)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    agents = report["agents"]
    assert {a["node"] for a in agents} == {ray_cluster.node_id(1), ray_cluster.node_id(2)}  # one per node, not head
    assert [a["share"] for a in agents] == ["0/2", "1/2"] and not report["agent_losses"]
    sent = sum(p["requests"]["sent"] for p in report["phases"])
    assert sum(a["requests"]["sent"] for a in agents) == sent == 10 + 120
    assert abs(agents[0]["requests"]["sent"] - agents[1]["requests"]["sent"]) <= 1  # arrivals interleaved
    assert all(abs(a["clock_offset_ms"]) < 1000 and 0 <= a["clock_uncertainty_ms"] < 100 for a in agents)
    assert report["cluster"]["nodes"] == 2 and report["cluster"]["heartbeats"] > 0
    assert sum(c["requests"]["sent"] for c in report["classes"].values()) == report["requests"]["sent"]
    # the .hlog, added by interval from the agents' own logs, holds every sample: its percentiles are the report's
    whole = new_histogram()
    for _, _, tag, histogram in read_log(tmp_path / "r.hlog"):
        if tag == "steady:latency":
            whole.add(histogram)
    assert whole.get_total_count() == report["requests"]["ok"] == 120
    assert summarize_ms(whole) == report["latency_ms"]
    assert "cluster: 2 agents on 2 nodes" in result.stdout


def test_references_are_computed_once_and_every_agents_images_verified(ray_cluster, stand_in_server, tmp_path):
    """Against a Triton with the bls contract (the stand-in: its images come at once), over Ray's client address: the
    coordinator computes the two references, the agents compute none and check every image they receive."""
    scenario = {"name": "cluster-verified", "target": {"url": f"grpc://{stand_in_server.grpc_url}"},
                "workload": {"prompts": ["a lighthouse", "a red bicycle"], "seed": 7, "steps": 2, "size": "64x64",
                             "prompts_per_request": {1: 1, 2: 1}},
                "phases": [{"name": "load", "executor": "constant-concurrency", "concurrency": 2, "requests": 8}]}
    result = run(ray_cluster, tmp_path, scenario, address=ray_cluster.client_address)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    verification = report["verification"]
    assert report["cluster"]["references_shared"] == 2 == verification["references"]  # none computed by the agents
    assert verification["checked"] == report["images"]["ok"] > 8 and verification["mismatches"] == 0
    assert all(a["requests"]["ok"] == 4 for a in report["agents"])


def test_a_lost_node_is_recorded_and_the_run_goes_on(ray_cluster, tmp_path):
    """A third worker node joins, three agents run (one per node), and that node is killed mid-run (raylet, workers
    and all): its agent is lost, the others finish their shares, the lost agent's requests until its last heartbeat
    stay in the totals, later intervals are partial, the verdict fails."""
    node = ray_cluster.add_node()
    scenario = {**FAKE, "phases": [{"name": "steady", "executor": "constant-arrival-rate", "rate": "30/s",
                                    "duration": "7s"}]}
    cmd = command(tmp_path, scenario, ray_cluster.address)
    cmd[cmd.index("--agents") + 1] = "3"
    process = started(ray_cluster, cmd)
    try:
        assert process.stdout is not None
        time.sleep(4.5)
        killed = ray_cluster.node_id(node.index)
        ray_cluster.kill_node(node.index)
        output = process.stdout.read()
        assert process.wait(timeout=120) == 1, output
    finally:
        process.kill()
    report = json.loads((tmp_path / "r.json").read_text())
    [loss] = report["agent_losses"]
    lost = next(a for a in report["agents"] if a["node"] == killed)
    survivors = [a for a in report["agents"] if a["node"] != killed]
    assert loss["agent"] == lost["agent"] and 1.0 < loss["at_s"] < 7 and loss["reason"]
    assert sum(a["requests"]["sent"] for a in survivors) == 210 - 70 and not any(a["lost"] for a in survivors)
    # the lost agent's requests until its last heartbeat (about 2.5 s into the run) are counted
    assert report["requests"]["sent"] == 140 + lost["requests"]["sent"] and lost["requests"]["sent"] >= 10
    assert any(row.get("partial") for row in report["timeline"])
    # its timeline rows until its last heartbeat are on the timeline too (the survivors sent 140)
    assert 150 <= sum(row["sent"] for row in report["timeline"]) <= report["requests"]["sent"]
    assert report["passed"] is False and "agents lost" in report["stop_reason"]
    assert "AGENT LOST" in output


def test_ctrl_c_stops_every_agent_and_writes_the_merged_report(ray_cluster, tmp_path):
    scenario = {**FAKE, "phases": [{"name": "steady", "executor": "constant-arrival-rate", "rate": "20/s",
                                    "duration": "60s"}]}
    process = started(ray_cluster, command(tmp_path, scenario, ray_cluster.address))
    assert process.stdout is not None
    time.sleep(4)
    process.send_signal(signal.SIGINT)
    output = process.stdout.read()
    assert process.wait(timeout=60) == 1, output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["interrupted"] and not report["agent_losses"]
    assert all(0 < a["requests"]["sent"] < 600 for a in report["agents"])
    assert report["requests"]["sent"] == sum(a["requests"]["sent"] for a in report["agents"])


@pytest.mark.parametrize("agents, flags, code, said", [
    ("3", ["--place-timeout", "2"], 3, "could not place 3 agents"),
    ("2", ["--workers", "2"], 2, "--cluster ADDRESS and --agents N go together"),
])
def test_what_cannot_run_says_why(ray_cluster, tmp_path, agents, flags, code, said):
    cmd = command(tmp_path, FAKE, ray_cluster.address, *flags)
    cmd[cmd.index("--agents") + 1] = agents
    result = subprocess.run(cmd, cwd=ROOT, env=ray_cluster.env, capture_output=True, text=True, timeout=120)
    assert result.returncode == code and said in result.stdout + result.stderr, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_run_whose_every_agent_is_lost_still_writes_its_report(ray_cluster, tmp_path):
    """Both agents' processes killed mid-run (Ray does not restart them): the report still comes, from their last
    heartbeats — the requests they had sent, the phase they were in — interrupted and failed."""
    scenario = {**FAKE, "phases": [{"name": "steady", "executor": "constant-arrival-rate", "rate": "20/s",
                                    "duration": "30s"}]}
    before = _agent_pids()  # an earlier test's agents may still be on their way out
    process = started(ray_cluster, command(tmp_path, scenario, ray_cluster.address))
    try:
        time.sleep(5)
        agents = _agent_pids() - before
        assert len(agents) == 2, agents
        for pid in agents:
            os.kill(pid, signal.SIGKILL)
        assert process.stdout is not None
        output = process.stdout.read()
        assert process.wait(timeout=120) == 1, output
    finally:
        process.kill()
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["agent_losses"]) == 2 and report["interrupted"] and not report["passed"]
    assert [p["name"] for p in report["phases"]] == ["steady"]
    assert sum(a["requests"]["sent"] for a in report["agents"]) == report["requests"]["sent"] >= 20


def _agent_pids() -> set[int]:
    """The PIDs of the LoadAgent actors' processes on this machine."""
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _is_agent(p)}


def _is_agent(process: Path) -> bool:
    try:
        return (process / "cmdline").read_bytes().startswith(b"ray::LoadAgent")
    except OSError:
        return False


def test_capacity_search_spreads_every_step_over_the_agents(ray_cluster, sleeper_server, tmp_path):
    """`capacity --cluster --agents 2`: the sleeper (one instance, 100 ms a request: 10 requests/s) searched with the
    load of two agents on the two worker nodes finds what one host finds, every step's requests split over both
    agents, and the report and page list the agents with their counts adding up to the steps'."""
    scenario = {"name": "sleeper", "target": {"url": sleeper_server.grpc_url, "model": "sleeper"}, "verify": False,
                "workload": {"prompts": ["a"], "size": "64x64"},
                "capacity": {"start": 4, "max": 16, "step_duration": "2s", "min_requests": 8, "repeats": 1,
                             "precision": 0.2, "warmup": False}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(scenario))
    result = subprocess.run([sys.executable, "-m", "flux_async", "capacity", str(tmp_path / "s.yaml"), "--cluster",
                             ray_cluster.address, "--agents", "2", "--slo", "p(99) < 300ms", "--report",
                             str(tmp_path / "c.json"), "--html", str(tmp_path / "c.html")],
                            cwd=ROOT, env=ray_cluster.env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "c.json").read_text())
    capacity, agents = report["capacity"], report["agents"]
    assert 8 <= capacity["max_rate_per_s"] <= 12.5 and capacity["bounded_by"] == "the SLO", capacity
    assert [s["load"] for s in capacity["steps"]][:3] == [4, 8, 16]
    assert {a["node"] for a in agents} == {ray_cluster.node_id(1), ray_cluster.node_id(2)}
    steps_sent = sum(s["requests"]["sent"] for s in capacity["steps"])
    assert sum(a["requests"]["sent"] for a in agents) == steps_sent
    assert all(a["requests"]["sent"] >= steps_sent // 2 - len(capacity["steps"]) for a in agents), agents
    assert report["cluster"]["agents"] == 2 and report["agent_losses"] == [] and report["passed"]
    assert "cluster: 2 agents on 2 nodes" in result.stdout
    assert 'id="agent-table"' in (tmp_path / "c.html").read_text()
