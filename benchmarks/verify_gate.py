"""The verification gate against served bugs: scenarios/burst.yaml through a real Triton, correct and with each broken
`bls`/`dit_transformer` of tests/fixtures swapped in, under the default gate; plus what a comparison costs per image.
Writes benchmarks/results/verify-gate-<label>.json and re-renders BENCHMARKS.md.
    uv run python benchmarks/verify_gate.py                       # an embedded Triton on the tiny weights (CPU)
    python benchmarks/verify_gate.py --http-url H:8000 --grpc-url H:8001 --label h200   # a running server
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from common import RESULTS, ROOT, machine

sys.path.insert(0, str(ROOT))
from flux_async.measure.gates import GATES, explicit_gate  # noqa: E402
from flux_async.testing.model_swap import swapped_model  # noqa: E402
from flux_async.verification.verifier import compare  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
WIDE_WINDOW = {"dynamic_batching": {"max_queue_delay_microseconds": 100_000}}
SINGLE_PROMPTS = {  # as tests/regression: single-prompt requests that Triton's dynamic batcher groups
    "name": "cross-request", "target": {"protocol": "grpc", "request_timeout": "120s"},
    "workload": {"prompts": ["A red bicycle", "A lighthouse at dusk", "A bowl of ramen", "A snowy forest"],
                 "seed": 77, "steps": 4, "size": "256x256"},
    "phases": [{"name": "together", "executor": "constant-concurrency", "concurrency": 4, "requests": 16}],
}
CASES = [  # name, model, model.py (None: the repository's own), scenario, what it is
    ("correct", "bls", None, "burst", "the repository's models"),
    ("correct", "dit_transformer", None, "single", "the repository's models, requests batched by Triton"),
    ("bf16-noise", "bls", FIXTURES / "noisy_models" / "bls_bf16_noise" / "model.py", "burst",
     "correct, with the worst measured bf16 noise on batched items"),
    ("dit_swap", "dit_transformer", FIXTURES / "broken_models" / "dit_swap" / "model.py", "burst",
     "batch items swapped"),
    ("dit_cross", "dit_transformer", FIXTURES / "broken_models" / "dit_cross" / "model.py", "single",
     "requests batched by Triton get each other's outputs"),
    ("bls_leak", "bls", FIXTURES / "broken_models" / "bls_leak" / "model.py", "single",
     "the previous request's latents leak in"),
    ("bls_seed", "bls", FIXTURES / "broken_models" / "bls_seed" / "model.py", "burst",
     "a request's second item uses the first's seed"),
    ("bls_blend", "bls", FIXTURES / "broken_models" / "bls_blend" / "model.py", "burst",
     "10 % of the previous item's image blended in"),
]


def comparison_cost(repeats: int = 5) -> dict:
    """Median milliseconds of one comparison (scores and verdict) per image size and gate, in this process."""
    rng = np.random.default_rng(0)
    gates = {"auto": GATES["auto"], "exact": GATES["exact"], "with SSIM": explicit_gate({"min_ssim": 0.99})}
    out = {}
    for size in (256, 1024):
        reference = rng.random((3, size, size), dtype=np.float32)
        received = np.clip(reference + rng.normal(0, 0.005, reference.shape).astype(np.float32), 0, 1)
        for name, gate in gates.items():
            compare(received, reference, gate)
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                compare(received, reference, gate)
                times.append((time.perf_counter() - start) * 1000)
            out[f"{size}x{size} {name}"] = round(statistics.median(times), 2)
    return out


async def run(server, kind: str, size: str | None, duration_s: float) -> dict:
    from rich.console import Console

    from flux_async.run.runner import RunOptions, run_scenario
    from flux_async.scenario.config import load_scenario, parse_scenario

    scenario = load_scenario(ROOT / "scenarios" / "burst.yaml") if kind == "burst" else parse_scenario(SINGLE_PROMPTS)
    scenario = replace(scenario, target=replace(scenario.target, urls=[server.grpc_url]))
    if size:
        width, height = map(int, size.split("x"))
        scenario = replace(scenario, workload=replace(scenario.workload, width=width, height=height))
    output = io.StringIO()
    with tempfile.TemporaryDirectory() as mismatches:  # the PNGs of mismatches are not kept
        options = RunOptions(progress=False, mismatch_dir=Path(mismatches),
                             duration_s=duration_s if kind == "burst" else None)
        report, _ = await run_scenario(scenario, options, Console(file=output, width=200))  # raises if it cannot run
    return report


def summarize(name: str, what: str, kind: str, report: dict) -> dict:
    v = report["verification"]
    failing = [m for m in v["mismatch_examples"] if m.get("psnr") is not None]
    best_failing = {key: max((m[key] for m in failing if m.get(key) is not None), default=None)
                    for key in ("psnr", "tile_psnr")}
    return {"case": name, "what": what, "scenario": kind, "passed": report["passed"], "checked": v["checked"],
            "mismatches": v["mismatches"], "worst_passing": v.get("worst_passing", {}), "margin": v.get("margin", {}),
            "best_failing": best_failing,
            "failed_on": sorted({re.sub(r" [-\d.]+ dB .*| [-\d.]+%? .*", "", r) for m in v["mismatch_examples"]
                                 for r in m["reasons"]})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-url"), parser.add_argument("--grpc-url")
    parser.add_argument("--label", default="cpu")
    parser.add_argument("--size", help="override burst.yaml's 256x256, e.g. 1024x1024")
    parser.add_argument("--duration", type=float, default=4.0, help="burst phase seconds (burst.yaml: 32)")
    parser.add_argument("--cases", default=",".join(dict.fromkeys(c[0] for c in CASES)))
    parser.add_argument("--out", type=Path, help="the JSON (default benchmarks/results/verify-gate-LABEL.json)")
    args = parser.parse_args()
    from flux_async.launch.triton_server import TritonServer
    from flux_async.testing.pytest_plugin import RemoteServer

    wanted = args.cases.split(",")
    started = datetime.now(timezone.utc)
    serving = (nullcontext(RemoteServer(args.http_url, args.grpc_url)) if args.http_url else
               TritonServer(model_control_mode="explicit", extra_args=["--exit-timeout-secs=5"]))
    result = {"measured_at": started.strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "label": args.label,
              "size": args.size or "256x256 (burst.yaml)", "gate": GATES["auto"].describe(),
              "comparison_ms": comparison_cost(), "cases": []}
    out = args.out or RESULTS / f"verify-gate-{args.label}.json"
    with serving as server:
        for name, model, model_py, kind, what in CASES:
            if name not in wanted:
                continue
            window = WIDE_WINDOW if model == "dit_transformer" else None
            swap = swapped_model(server.http_url, model, model_py, window) if model_py or window else nullcontext()
            with swap:
                row = summarize(name, what, kind, asyncio.run(run(server, kind, args.size, args.duration)))
            result["cases"].append(row)
            out.write_text(json.dumps(result, indent=1))
            print(json.dumps(row), flush=True)
    import render

    render.main()


if __name__ == "__main__":
    main()
