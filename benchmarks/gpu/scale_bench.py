"""Multi-GPU scale-out: one Triton per GPU (flux_async.launch.fleet), and `capacity` against 1, 2, 4 ... of them.

Starts a fleet on the first max(--counts) GPUs (or, --layout single, one Triton seeing them all), records where
each server's models sit (nvidia-smi, per GPU), checks that every server makes the same image for the same request,
warms every server, then runs the capacity search of scenarios/capacity-gpu.yaml (start and max scaled by the GPU
count) for each count, and writes
capacity, scaling efficiency, the load generator's CPU per request and each GPU's utilization to --out after every
part. Run by run_scale_bench.sh. A dry run on a CPU (tiny weights; "GPUs" are labels) checks the script itself:
    uv run python benchmarks/gpu/scale_bench.py --weights-spec TINY_DIR --size 128 --counts 1,2 --rate-per-gpu 2 \
        --out /tmp/scale.json
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import resource
import statistics
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "capacity-gpu.yaml"
SLO = "p(99) < 2s"


class UtilizationWatch:
    """Samples every GPU's utilization twice a second while a part runs; `summary()` gives each GPU's median."""

    def __init__(self):
        from flux_async.measure.gpu import GpuSampler

        self.sampler, self.samples, self._done = GpuSampler(), [], threading.Event()

    def __enter__(self):
        def watch():
            while not self._done.wait(0.5):
                self.samples.append([g["utilization_pct"] for g in self.sampler.sample()])

        self._thread = threading.Thread(target=watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        self._thread.join()

    def summary(self) -> dict:
        if not self.samples or not self.samples[0]:
            return {}
        return {f"gpu{i}_util_pct_p50": statistics.median(s[i] for s in self.samples)
                for i in range(len(self.samples[0]))}


def placement() -> dict:
    """{GPU index: {process: MiB}}: where each server's stubs and the servers themselves hold memory (nvidia-smi)."""
    from flux_bench import gpu_processes  # this script's folder is on sys.path

    found: dict = {}
    for pid, name, gpu, mib in gpu_processes():
        found.setdefault(str(gpu), {})[f"{name} (pid {pid})"] = mib
    return found


def triton_cpu_s() -> float:
    """CPU seconds used so far by every tritonserver and python-backend stub process on the machine."""
    import os

    total = 0.0
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or b"triton" not in (proc / "cmdline").read_bytes().split(b"\0")[0]:
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def same_image_everywhere(urls: list[str], size: int, steps: int, copies: int = 1) -> dict:
    """The same request (prompt, seed) `copies` times on every server at once (so each GPU's instances serve some):
    the largest pixel difference from the first image."""
    from concurrent.futures import ThreadPoolExecutor

    import tritonclient.grpc as grpcclient

    from flux_async.targets.bls_inputs import bls_inputs

    def generate(url: str):
        client = grpcclient.InferenceServerClient(url)
        return client.infer("bls", bls_inputs(grpcclient, ["A lighthouse on a rocky coast at dusk"], seeds=[11],
                                              height=size, width=size, num_inference_steps=steps,
                                              max_sequence_length=256), client_timeout=600).as_numpy("images")

    with ThreadPoolExecutor(len(urls) * copies) as pool:
        images = list(pool.map(generate, [url for url in urls for _ in range(copies)]))
    return {"requests": len(images), "max_abs_diff_to_first": [float(np.abs(i - images[0]).max()) for i in images],
            "bitwise_equal": all(np.array_equal(i, images[0]) for i in images)}


def scenario_for(urls: list[str], size: int, rate_per_gpu: float | None, gpus: int | None = None):
    """scenarios/capacity-gpu.yaml against `urls`, its per-GPU search bounds scaled by the GPU count (default: one
    GPU per URL)."""
    from flux_async.scenario.config import load_scenario

    scenario = load_scenario(SCENARIO)
    n, cap = gpus or len(urls), scenario.capacity
    per_gpu = rate_per_gpu / cap.start if rate_per_gpu else 1.0  # --rate-per-gpu: a dry run's other scale
    capacity = replace(cap, start=cap.start * per_gpu * n, max=cap.max * per_gpu * n)
    return replace(scenario, target=replace(scenario.target, urls=list(urls)), capacity=capacity,
                   workload=replace(scenario.workload, height=size, width=size))


def warm(urls: list[str], size: int, gpus: int) -> None:
    """Two requests in flight per GPU for a few rounds: every server has captured its CUDA graphs for batch 1 and 2
    of each stage before anything is measured."""
    from rich.console import Console

    from flux_async.run.runner import RunOptions, run_scenario
    from flux_async.scenario.config import parse_scenario

    base = scenario_for(urls, size, None, gpus)
    phase = parse_scenario({"workload": {"prompts": ["warm"]},
                            "phases": [{"name": "warm-up", "executor": "constant-concurrency",
                                        "concurrency": 2 * gpus, "requests": 6 * gpus}]}).phases[0]
    asyncio.run(run_scenario(replace(base, phases=[phase], thresholds=[]), RunOptions(progress=False, verify=False),
                             Console(file=io.StringIO())))


def search(urls: list[str], gpus: int, size: int, rate_per_gpu: float | None, log: Path) -> dict:
    """`capacity` against `urls` (serving on `gpus` GPUs): its section, the client's and the servers' CPU per request
    and each GPU's utilization meanwhile."""
    from rich.console import Console

    from flux_async.run.runner import RunOptions, run_capacity

    scenario = scenario_for(urls, size, rate_per_gpu, gpus)
    before, server_before = resource.getrusage(resource.RUSAGE_SELF), triton_cpu_s()
    started = time.perf_counter()
    with open(log, "a") as out, UtilizationWatch() as watch:
        report, code = asyncio.run(run_capacity(scenario, RunOptions(progress=False, verify=False), [SLO], {},
                                                Console(file=out, width=180)))
    after, server_cpu_s = resource.getrusage(resource.RUSAGE_SELF), triton_cpu_s() - server_before
    section = report["capacity"]
    requests = max(sum(s["requests"]["ok"] + s["requests"]["errors"] for s in section["steps"]), 1)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    rates = [s["completion_rate_per_s"] for s in section["steps"] if s["completion_rate_per_s"]]
    return {"gpus": gpus, "servers": len(urls), "exit_code": code, "search_s": time.perf_counter() - started,
            "max_rate_per_s": section["max_rate_per_s"], "max_images_per_s": section["max_images_per_s"],
            "lowest_failing_load": section["lowest_failing_load"], "bounded_by": section["bounded_by"],
            "saturation_rate_per_s": max(rates, default=None),  # the fastest completion rate of any step
            "client_cpu_ms_per_request": 1000 * cpu_s / requests,
            "server_cpu_ms_per_request": 1000 * server_cpu_s / requests, "utilization": watch.summary(),
            "settings": section["settings"], "slo": section["slo"],
            "steps": [{k: s[k] for k in ("step", "load", "passed", "achieved_requests_per_s", "completion_rate_per_s",
                                         "latency_ms", "requests")}
                      | {"failed": [r["expr"] for r in s["slo"] if not r["ok"]]} for s in section["steps"]],
            "knee_stages": (section.get("knee") or {}).get("stages")}


def scaling(searches: list[dict]) -> list[dict]:
    """Each count's capacity (and saturation rate) against the one-GPU figure times the count."""
    one = next((s for s in searches if s["gpus"] == 1), None)
    rows = []
    for s in searches:
        row = {"gpus": s["gpus"], "max_rate_per_s": s["max_rate_per_s"],
               "saturation_rate_per_s": s["saturation_rate_per_s"]}
        for key, name in (("max_rate_per_s", "efficiency"), ("saturation_rate_per_s", "saturation_efficiency")):
            if one and one[key] and s[key]:
                row[name] = s[key] / (one[key] * s["gpus"])
        rows.append(row)
    return rows


def main() -> None:
    from flux_async.launch.fleet import ServerFleet, nvml_gpu_count
    from flux_async.launch.triton_server import ServerConfig, TritonServer
    from flux_async.measure.gpu import GpuSampler
    from flux_async.scenario.config import load_scenario

    parser = argparse.ArgumentParser()
    parser.add_argument("--tritonserver", default=None, help="default: the one bundled in nvidia-pytriton")
    parser.add_argument("--weights-spec", default="preset:flux1-schnell", help="a preset or a weights folder")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--counts", default="1,2,4", help="GPU counts to search (those above the machine's skipped)")
    parser.add_argument("--layout", choices=("fleet", "single"), default="fleet",
                        help="fleet: one Triton per GPU; single: one Triton seeing the largest count's GPUs (its "
                             "models' KIND_AUTO instance groups put instances on each), searched at that count only")
    parser.add_argument("--rate-per-gpu", type=float, default=None,
                        help="first rate per GPU (default: the scenario's; a CPU dry run needs its own)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    available = nvml_gpu_count()
    wanted = [int(c) for c in args.counts.split(",")]
    counts = [c for c in wanted if available is None or c <= available]
    gpus = [str(i) for i in range(max(counts))]
    if args.layout == "single":
        counts = [len(gpus)]
    names = sorted({g["name"] for g in GpuSampler().sample()})
    report = {"layout": args.layout, "gpu": ", ".join(names) or "none (CPU dry run)", "gpus_available": available,
              "counts": counts, "skipped_counts": sorted(set(wanted) - set(counts)), "weights": args.weights_spec,
              "size": args.size, "scenario": SCENARIO.name, "searches": []}
    out, log = Path(args.out), Path(args.out).with_suffix(".log")

    def dump():  # after every part: a run cut short still leaves what it measured
        out.write_text(json.dumps(report, indent=1))

    started = time.perf_counter()
    config = ServerConfig(weights=args.weights_spec, tritonserver=args.tritonserver, startup_timeout_s=900)
    if args.layout == "fleet":
        service = ServerFleet(gpus, config)
    else:
        service = TritonServer(replace(config, env={"CUDA_VISIBLE_DEVICES": ",".join(gpus)}))
    with service:
        report["start_s"] = time.perf_counter() - started
        report["placement_mib"] = placement()
        urls = service.grpc_urls if args.layout == "fleet" else [service.grpc_url]
        steps = load_scenario(SCENARIO).workload.steps
        copies = 1 if args.layout == "fleet" else 2 * len(gpus)
        report["same_image_everywhere"] = same_image_everywhere(urls, args.size, steps, copies)
        print(json.dumps({k: report[k] for k in ("start_s", "placement_mib", "same_image_everywhere")}), flush=True)
        dump()
        warm(urls, args.size, len(gpus))
        for count in counts:
            result = search(urls[:count] if args.layout == "fleet" else urls, count, args.size, args.rate_per_gpu,
                            log)
            report["searches"].append(result)
            report["scaling"] = scaling(report["searches"])
            print(json.dumps({k: result[k] for k in ("gpus", "max_rate_per_s", "saturation_rate_per_s", "search_s",
                                                     "client_cpu_ms_per_request", "server_cpu_ms_per_request",
                                                     "utilization")}), flush=True)
            dump()
    print(json.dumps(report.get("scaling")), flush=True)


if __name__ == "__main__":
    main()
