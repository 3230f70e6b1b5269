"""Trace replay in constant memory: peak RSS and tracemalloc's peak while a trace phase is checked (the scenario's
up-front pass) and its schedule iterated into jobs (what the engine's pacing thread and loop do per line, without
sending), for a generated 1M-line trace against a 10k-line one. Each size runs in its own process, so its peak RSS
(VmHWM) is that size's own.

    uv run python benchmarks/trace_memory.py [--sizes 10000 1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from common import ROOT, save

PROMPTS = ["A cat holding a sign that says hello world", "A lighthouse on a rocky coast at dusk",
           "A bowl of ramen on a wooden table", "A red bicycle leaning against a brick wall"]


def generate(path: Path, lines: int) -> None:
    """Bursts of previews (1 prompt) and finals (2 prompts, some with their own seeds and extra), 1 ms to 1 s apart."""
    rng, t = random.Random(0), 0.0
    with path.open("w") as out:
        for i in range(lines):
            t += 0 if rng.random() < 0.3 else rng.uniform(1, 1000)
            if rng.random() < 0.75:
                item = {"timestamp": round(t, 3), "prompt": rng.choice(PROMPTS), "class": "preview"}
            else:
                item = {"timestamp": round(t, 3), "prompts": rng.sample(PROMPTS, 2), "class": "final",
                        "seeds": [i, i + 1], "extra": {"request_id": f"r{i}"}}
            out.write(json.dumps(item) + "\n")


def status_mb(key: str) -> float:
    """A /proc/self/status figure (VmRSS: resident now, VmHWM: its peak) in MiB."""
    line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(key + ":"))
    return int(line.split()[1]) / 1024


def child(trace: Path) -> dict:
    """In a fresh process: parse a scenario replaying `trace`, iterate its schedule into jobs; the peaks."""
    sys.path.insert(0, str(ROOT))
    from flux_async.scenario.config import parse_scenario
    from flux_async.scenario.workload import JobSource

    before = status_mb("VmRSS")
    tracemalloc.start()
    started = time.perf_counter()
    scenario = parse_scenario({"name": "m", "target": {"url": "fake://"}, "workload": {
        "prompts": PROMPTS, "seed": 1, "classes": {"preview": {"weight": 3, "size": "128x128", "steps": 2},
                                                   "final": {"weight": 1, "size": "256x256", "steps": 4}}},
        "phases": [{"executor": "trace", "file": str(trace)}]})
    checked = time.perf_counter()
    phase, jobs, count, prompts = scenario.phases[0], JobSource(scenario.workload), 0, 0
    for _, line in phase.schedule(None):  # type: ignore[attr-defined]
        job = jobs.from_trace(line)
        count, prompts = count + 1, prompts + len(job.prompts)
    done = time.perf_counter()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {"lines": count, "prompts": prompts, "file_mb": round(trace.stat().st_size / 2**20, 1),
            "check_s": round(checked - started, 2), "iterate_s": round(done - checked, 2),
            "rss_mb_before": round(before, 1), "peak_rss_mb": round(status_mb("VmHWM"), 1),
            "tracemalloc_peak_kb": round(peak / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 1_000_000])
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            trace = Path(tmp) / f"trace-{size}.jsonl"
            generate(trace, size)
            result = subprocess.run([sys.executable, __file__, "--child", str(trace)], check=True,
                                    capture_output=True, text=True)
            row = json.loads(result.stdout.splitlines()[-1])
            print(json.dumps(row))
            rows.append(row)
    save("trace_memory", {"rows": rows, "note": "times with tracemalloc on: slower than a plain replay"})


if __name__ == "__main__":
    main()
