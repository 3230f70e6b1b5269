"""Condense the output folder of benchmarks/gpu/run_gate_served.sh (unpacked) into
benchmarks/results/gate-served-<label>.json, which BENCHMARKS.md renders; parts the folder lacks (a run of some STEPS)
keep their earlier results, each part with its own date:
    uv run python benchmarks/gpu/collect_gate_served.py OUT_DIR --label h200 --measured-at "2026-12-01 05:20 UTC"
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from common import RESULTS  # noqa: E402


def verification(report: dict) -> dict:
    v = report["verification"]
    return {key: v.get(key) for key in ("checked", "mismatches", "unchecked", "worst_passing", "margin",
                                        "gate_explained", "sample_rate")} | {"passed": report.get("passed")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--label", default="h200")
    parser.add_argument("--gpu", default="NVIDIA H200")
    parser.add_argument("--measured-at", required=True, help="when run_gate_served.sh ran, e.g. '2026-12-01 02:25 UTC'")
    args = parser.parse_args()
    folder, path = args.folder, RESULTS / f"gate-served-{args.label}.json"
    out = json.loads(path.read_text()) if path.is_file() else {}
    out |= {"gpu": args.gpu, "weights": "preset:flux1-schnell", "dtype": "bfloat16"}
    dated = {"measured_at": args.measured_at}
    if (folder / "burst.json").is_file():
        report = json.loads((folder / "burst.json").read_text())
        out["cli_burst"] = verification(report) | {"images_ok": report["images"]["ok"]} | dated
    if (folder / "capacity.json").is_file():
        report = json.loads((folder / "capacity.json").read_text())
        dit_batch = max((int(size) for step in report["capacity"]["steps"]
                         for size in step["stages"].get("dit_transformer", {}).get("batch_sizes", {})), default=None)
        out["capacity"] = verification(report) | {"max_rate_per_s": report["capacity"].get("max_rate_per_s"),
                                                  "largest_dit_batch": dit_batch} | dated
    if (folder / "pytest.log").is_file():
        out["gpu_tests"] = {"summary": (folder / "pytest.log").read_text().strip().splitlines()[-1]} | dated
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(path)


if __name__ == "__main__":
    main()
