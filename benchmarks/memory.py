"""Memory: the tester's RSS over one million requests (the fake target, so only flux_async itself is measured).

    uv run python benchmarks/memory.py [--requests 1000000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import yaml
from common import run_measured, save


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scenario = {"name": "memory", "target": {"url": "fake://?latency=0ms"}, "workload": {"prompts": ["a cat"]},
                    "phases": [{"executor": "constant-concurrency", "concurrency": 64, "requests": args.requests}]}
        (folder / "s.yaml").write_text(yaml.safe_dump(scenario))
        run_measured([sys.executable, "-m", "flux_async", "run", str(folder / "s.yaml"), "--no-progress",
                      "--report", str(folder / "r.json"), "--hlog", str(folder / "r.hlog")], timeout=3600)
        report = json.loads((folder / "r.json").read_text())
    client = report["client"]
    print(json.dumps(client))
    save("memory", {"requests": report["requests"]["sent"], "setup": "constant concurrency 64, latency 0, with .hlog",
                    "rss_mb_start": client["rss_mb_start"], "rss_mb_end": client["rss_mb_end"],
                    "requests_per_s": report["throughput"]["requests_per_s"],
                    "cpu_us_per_request": client["cpu_us_per_request"]})


if __name__ == "__main__":
    main()
