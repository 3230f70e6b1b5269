"""The cost of coordinating agents on Ray (`run --cluster --agents N`): the coordinator's CPU, the heartbeat's round
trip (how late an agent's interval reaches the coordinator beyond the 1 s poll), the clocks' uncertainty, and the
agents' own CPU per request, for 2, 4 and 8 agents on a local cluster (a head with no CPUs and two worker nodes of
N/2 logical CPUs each: every agent shares this machine's cores) against the fake target. Then, on the same cluster,
`capacity --cluster --agents N`: what each step costs beyond its own length (the start lead, the results' return).

    uv run python benchmarks/cluster_coordination.py [--agents 2 4 8] [--rate 40] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, save

sys.path.insert(0, str(ROOT))
from flux_async.testing.ray_cluster import LocalRayCluster  # noqa: E402


def measure(agents: int, rate: float, duration_s: float) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="flux_async_cluster_bench_"))
    scenario = {"name": "coordination", "target": {"url": "fake://?latency=20ms"}, "verify": False,
                "workload": {"prompts": ["a", "b"], "size": "64x64"},
                "phases": [{"name": "steady", "executor": "constant-arrival-rate", "rate": f"{rate:g}/s",
                            "duration": f"{duration_s:g}s"}]}
    (folder / "s.json").write_text(json.dumps(scenario))
    per_node = max(1, agents // 2)
    with LocalRayCluster(workers=2, cpus_per_worker=per_node) as cluster:
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", "flux_async", "run", str(folder / "s.json"), "--cluster",
                                 cluster.address, "--agents", str(agents), "--no-progress", "--report",
                                 str(folder / "r.json")], cwd=ROOT, env=cluster.env, capture_output=True, text=True,
                                timeout=600)
        wall = time.monotonic() - started
        capacity = measure_capacity(cluster, agents, folder)
    if result.returncode not in (0, 1):
        raise RuntimeError(result.stdout[-2000:] + result.stderr[-2000:])
    report = json.loads((folder / "r.json").read_text())
    cluster_info, rows = report["cluster"], report["agents"]
    return {"agents": agents, "capacity": capacity, "nodes": cluster_info["nodes"],
            "requests": report["requests"]["sent"],
            "requests_per_s": round(report["throughput"]["requests_per_s"], 2),
            "coordinator_cpu_s": cluster_info["coordinator_cpu_s"],
            "coordinator_cpu_share": round(cluster_info["coordinator_cpu_s"] / report["duration_s"], 4),
            "heartbeats": cluster_info["heartbeats"], "heartbeat_ms": cluster_info["heartbeat_ms"],
            "clock_uncertainty_max_ms": cluster_info["clock_uncertainty_max_ms"],
            "agent_cpu_us_per_request": round(sum(r["cpu_us_per_request"] or 0 for r in rows) / len(rows), 1),
            "schedule_lag_p99_ms": report["schedule_lag_ms"]["p99"], "wall_s": round(wall, 1)}


def measure_capacity(cluster: LocalRayCluster, agents: int, folder: Path, step_s: float = 2.0) -> dict:
    """`capacity --cluster` on the fake target (no limit: the search doubles to its max): each step's wall time beyond
    its own length, from the search's start (agents placed, clocks measured, sessions open) to its end."""
    scenario = {"name": "coordination-capacity", "target": {"url": "fake://?latency=20ms"}, "verify": False,
                "workload": {"prompts": ["a", "b"], "size": "64x64"},
                "capacity": {"start": 10, "max": 40, "step_duration": f"{step_s:g}s", "min_requests": 4,
                             "repeats": 1, "warmup": False}}
    (folder / "c.json").write_text(json.dumps(scenario))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "flux_async", "capacity", str(folder / "c.json"), "--slo",
                             "p(99) < 1s", "--cluster", cluster.address, "--agents", str(agents), "--report",
                             str(folder / "cap.json")], cwd=ROOT, env=cluster.env, capture_output=True, text=True,
                            timeout=600)
    wall = time.monotonic() - started
    if result.returncode not in (0, 1):
        raise RuntimeError(result.stdout[-2000:] + result.stderr[-2000:])
    report = json.loads((folder / "cap.json").read_text())
    steps = report["capacity"]["steps"]
    lengths = [s["duration_s"] for s in steps]
    return {"steps": len(steps), "step_s": step_s, "wall_s": round(wall, 1),
            "steps_wall_s": round(sum(lengths), 2), "coordinator_cpu_s": report["cluster"]["coordinator_cpu_s"],
            "max_rate_per_s": report["capacity"]["max_rate_per_s"],
            "agents_sent": sum(a["requests"]["sent"] for a in report["agents"]),
            "steps_sent": sum(s["requests"]["sent"] for s in steps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agents", type=int, nargs="+", default=[2, 4, 8])
    parser.add_argument("--rate", type=float, default=40.0, help="requests/s over all agents")
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    rows = []
    for agents in args.agents:
        rows.append(measure(agents, args.rate, args.duration))
        print(json.dumps(rows[-1]), flush=True)
    save("cluster_coordination", {"rate_per_s": args.rate, "duration_s": args.duration, "rows": rows})


if __name__ == "__main__":
    main()
