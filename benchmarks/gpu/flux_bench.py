"""FLUX.1-schnell-sized pipeline on one GPU (random weights, bf16, 1024², 4 steps): in-process FluxPipeline
(per-stage times, latency at batch 1 and 4, peak memory), then the same weights served by triton_models/ and
driven by flux_async (p50/p99 and images/s for 1, 2, 4 prompts per request at concurrency 1, 2, 4; per-stage
Triton statistics; GPU memory per image at batch 1, 2, 4, 8). Writes JSON to --out after every part. Run by
run_flux_bench.sh. A dry run on a CPU with the tiny weights checks the script itself:
    uv run python benchmarks/gpu/flux_bench.py --weights-spec TINY_DIR --size 128 --out /tmp/b.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import statistics
import threading
import time

import torch
from dit_gap import cuda_libraries  # this script's folder is on sys.path

PROMPT = "A cat holding a sign that says hello world"
SIZE, STEPS = 1024, 4
GPU = torch.cuda.is_available()
CUDA_GRAPHS = "1"  # --eager: "0"


class GpuWatch:
    """Samples SM clock, power, temperature and NVML's clock-event reasons every 100 ms while a part runs; `summary()`
    gives medians over the busy samples (so two parts can be compared at the same clocks, or shown not to be)."""

    def __init__(self):
        self.samples, self._done, self._thread = [], threading.Event(), None
        try:
            import pynvml

            pynvml.nvmlInit()
            self._nvml, self._handle = pynvml, pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # CPU dry run
            self._nvml = None

    def _read(self) -> dict:
        nvml, h = self._nvml, self._handle
        reasons = nvml.nvmlDeviceGetCurrentClocksEventReasons(h)
        return {"sm_mhz": nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM),
                "power_w": nvml.nvmlDeviceGetPowerUsage(h) / 1000, "temp_c": nvml.nvmlDeviceGetTemperature(h, 0),
                "util": nvml.nvmlDeviceGetUtilizationRates(h).gpu, "power_cap": bool(reasons & 0x4),
                "thermal": bool(reasons & (0x20 | 0x40 | 0x8))}

    def __enter__(self):
        def watch():
            while not self._done.wait(0.1):
                self.samples.append(self._read())

        if self._nvml is not None:
            self._thread = threading.Thread(target=watch, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc):
        self._done.set()
        if self._thread:
            self._thread.join()

    def summary(self) -> dict:
        busy = [s for s in self.samples if s["util"] >= 50]
        if not busy:
            return {"samples": len(self.samples)}
        median = lambda key: statistics.median(s[key] for s in busy)  # noqa: E731
        return {"busy_samples": len(busy), "sm_mhz_p50": median("sm_mhz"), "sm_mhz_min": min(s["sm_mhz"] for s in busy),
                "power_w_p50": median("power_w"), "temp_c_max": max(s["temp_c"] for s in busy),
                "power_capped_share": sum(s["power_cap"] for s in busy) / len(busy),
                "thermal_share": sum(s["thermal"] for s in busy) / len(busy)}


def sync() -> None:
    if GPU:
        torch.cuda.synchronize()


def timed(fn, runs: int = 3) -> float:
    """Median milliseconds of `runs` calls after one warm-up, synchronized."""
    fn()
    sync()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        sync()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def load_pipeline(spec: str, device, dtype):
    """FluxPipeline on `device`: a preset's modules built directly there (seeded as the served preset), or a folder."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    from flux_async.pipeline.weights import load_module, load_tokenizer, resolve_weights

    source = resolve_weights(spec)
    if not source.preset:
        return FluxPipeline.from_pretrained(source.folder, torch_dtype=dtype).to(device), source
    modules = {name: load_module(source, name, device, dtype)
               for name in ("text_encoder", "text_encoder_2", "transformer", "vae")}
    pipe = FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler.from_config(source.scheduler_config()),
                        tokenizer=load_tokenizer(source, "tokenizer"),
                        tokenizer_2=load_tokenizer(source, "tokenizer_2"), **modules)
    return pipe, source


def in_process(spec: str, size: int, light: bool = False) -> dict:
    """FluxPipeline in this process with the same weights as the server: latency at batch 1 and 4, per-stage times,
    peak memory, and the GPU's clocks meanwhile. `light`: batch 1 and the transformer step only."""
    global SIZE
    SIZE = size
    device = torch.device("cuda", 0) if GPU else torch.device("cpu")
    dtype = torch.bfloat16 if GPU else torch.float32
    pipe, source = load_pipeline(spec, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    config = pipe.transformer.config

    def generate(batch: int):
        return pipe(prompt=[PROMPT] * batch, generator=[torch.Generator("cpu").manual_seed(i) for i in range(batch)],
                    num_inference_steps=STEPS, guidance_scale=0.0, height=SIZE, width=SIZE, max_sequence_length=256,
                    output_type="pt").images

    result = {}
    if GPU:
        torch.cuda.reset_peak_memory_stats()
    for batch in (1,) if light else (1, 4):
        with GpuWatch() as watch:  # batch 1: as many back-to-back images as the served batch-1 row
            ms = timed(lambda batch=batch: generate(batch), runs=8 if batch == 1 else 3)
        result[f"batch{batch}_ms"] = ms
        result[f"batch{batch}_ms_per_image"] = ms / batch
        result[f"batch{batch}_gpu"] = watch.summary()
        if GPU:
            result[f"batch{batch}_peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    with torch.inference_mode(), GpuWatch() as watch:
        if not light:
            result["clip_ms"] = timed(lambda: pipe._get_clip_prompt_embeds(PROMPT, device=device))
            result["t5_ms"] = timed(lambda: pipe._get_t5_prompt_embeds(PROMPT, max_sequence_length=256,
                                                                       device=device))
        latents = torch.randn(1, (SIZE // 16) ** 2, config.in_channels, device=device, dtype=dtype)
        embeds = torch.randn(1, 256, config.joint_attention_dim, device=device, dtype=dtype)
        pooled = torch.randn(1, config.pooled_projection_dim, device=device, dtype=dtype)
        img_ids = pipe._prepare_latent_image_ids(1, SIZE // 16, SIZE // 16, device, dtype)
        txt_ids = torch.zeros(256, 3, device=device, dtype=dtype)
        result["dit_step_ms"] = timed(lambda: pipe.transformer(
            hidden_states=latents, timestep=torch.full((1,), 0.5, device=device, dtype=dtype), guidance=None,
            pooled_projections=pooled, encoder_hidden_states=embeds, txt_ids=txt_ids, img_ids=img_ids,
            return_dict=False), runs=12)
        if not light:
            scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
            vae_latents = torch.randn(1, pipe.vae.config.latent_channels, SIZE // scale, SIZE // scale, device=device,
                                      dtype=dtype)
            result["vae_ms"] = timed(lambda: pipe.vae.decode(vae_latents, return_dict=False))
    result["stages_gpu"] = watch.summary()
    result["libraries"] = cuda_libraries()
    pipe = None  # the closures above hold it: drop it so gc.collect frees its GPU memory
    gc.collect()
    return result


def served(tritonserver: str | None, spec: str, results: dict, dump) -> None:
    """Start the server on `spec`, measure memory per image, then every row: prompts {1, 2, 4} x concurrency {1, 2, 4}
    over gRPC. (The device image lacks tritonclient's HTTP dependencies, and the carried wheels are near the tool's
    size limit.)"""
    from flux_async.launch.triton_server import TritonServer

    results["runs"] = []
    started = time.perf_counter()
    with TritonServer(weights=spec, tritonserver=tritonserver, startup_timeout_s=900,
                      env={"FLUX_ASYNC_TRACE": "1", "FLUX_ASYNC_CUDA_GRAPHS": CUDA_GRAPHS}) as server:
        results["server_start_s"] = time.perf_counter() - started
        results["memory"] = memory_per_image(server.grpc_url)  # first: the allocators have not grown yet
        results["memory"]["per_process_mib"] = per_process_memory()
        results["libraries"] = {model: cuda_libraries(pid) for pid, model in stub_models().items()}
        dump()
        for prompts, concurrency in [(p, c) for p in (1, 2, 4) for c in (1, 2, 4)]:
            row = measure_row(server, prompts, concurrency)
            results["runs"].append(row)
            dump()
            print(json.dumps({k: row[k] for k in ("prompts_per_request", "concurrency", "images_per_s")}
                             | {"p50": row["latency_ms"]["p50"], "stage_device_ms": row["stage_device_ms"],
                                "gpu": row["gpu"]}), flush=True)
        results["server_log_tail"] = server.log_text()[-2000:]


def measure_row(server, prompts: int, concurrency: int) -> dict:
    """One closed-loop flux_async run (a warm-up phase, then the measured one) and what the server logged meanwhile."""
    from rich.console import Console

    from flux_async.run.runner import RunOptions, run_scenario
    from flux_async.scenario.config import parse_scenario

    requests = max(3, 8 // prompts) if concurrency == 1 else max(2 * concurrency, 12 // prompts)
    scenario = parse_scenario({
        "name": f"gpu-{prompts}p-c{concurrency}",
        "target": {"url": server.grpc_url, "request_timeout": "300s"}, "verify": False,
        "workload": {"prompts": [PROMPT, "A lighthouse at dusk", "A bowl of ramen", "A red bicycle"],
                     "seed": 1, "steps": STEPS, "guidance": 0.0, "size": f"{SIZE}x{SIZE}",
                     "max_sequence_length": 256, "prompts_per_request": prompts},
        "phases": [{"name": "warm-up", "executor": "constant-concurrency", "concurrency": concurrency,
                    "requests": concurrency, "warmup": True},
                   {"name": "measure", "executor": "constant-concurrency", "concurrency": concurrency,
                    "requests": requests}]})
    log_start = len(server.log_text())
    with GpuWatch() as watch:
        report, _ = asyncio.run(run_scenario(scenario, RunOptions(progress=False, verify=False),
                                             Console(file=io.StringIO())))
    measured = next(p for p in report["phases"] if p["name"] == "measure")
    log = server.log_text()[log_start:]
    return {"prompts_per_request": prompts, "concurrency": concurrency,
            "requests": measured["requests"]["ok"], "errors": measured["requests"]["errors"],
            "latency_ms": measured["latency_ms"], "images_per_s": measured["throughput"]["images_per_s"],
            "stages": measured.get("stages"), "bls_parts_ms": parts(log), "stage_device_ms": stage_traces(log),
            "gpu": watch.summary()}


def trace_lines(log: str, tag: str) -> list[dict]:
    """The JSON objects of the server log's `tag` lines (FLUX_TRACE from bls, FLUX_STAGE_TRACE from the stages)."""
    found = []
    for line in log.splitlines():
        if f"{tag} " in line:
            try:
                found.append(json.loads(line.split(f"{tag} ", 1)[1].rstrip('"').replace('\\"', '"')))
            except ValueError:
                continue
    return found


def parts(log: str) -> dict:
    """Median milliseconds of each part of bls's requests, from the FLUX_TRACE lines of the server log."""
    traces = trace_lines(log, "FLUX_TRACE")
    if not traces:
        return {}
    return {name: statistics.median(sum(t[name]) for t in traces if name in t) for name in traces[0]
            if name != "prompts"}


def stage_traces(log: str) -> dict:
    """Median device (CUDA-event) milliseconds of each stage model's forward by batch size, from FLUX_STAGE_TRACE."""
    found: dict = {}
    for trace in trace_lines(log, "FLUX_STAGE_TRACE"):
        found.setdefault(f"{trace['model']}/{trace['items']}", []).append(trace.get("device_ms", trace["wall_ms"]))
    return {key: {"calls": len(v), "median_ms": statistics.median(v)} for key, v in sorted(found.items())}


def stub_models() -> dict:
    """{pid: model name} of the python-backend stubs running now."""
    import pathlib

    found = {}
    for proc in pathlib.Path("/proc").iterdir():
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"triton_python_backend_stub") and len(args) > 1:
            found[proc.name] = pathlib.Path(args[1].decode()).parent.parent.name
    return found


def nvidia_smi(query: str) -> list[list[str]]:
    """The rows of `nvidia-smi --query-<query>` as lists of fields ([] without nvidia-smi)."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", f"--query-{query}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [[x.strip() for x in row.split(",")] for row in out.strip().splitlines()]


def gpu_processes() -> list[tuple[str, str, int, int]]:
    """(pid, name, GPU index, MiB) of every process holding GPU memory, stubs named by their model (nvidia-smi)."""
    index = {uuid: int(i) for i, uuid in nvidia_smi("gpu=index,uuid")}
    names = stub_models()
    return [(pid, names.get(pid) or _command_name(pid), index.get(uuid, -1), int(mib))
            for pid, uuid, mib in nvidia_smi("compute-apps=pid,gpu_uuid,used_memory")]


def per_process_memory() -> dict:
    """GPU memory (MiB) of each process, stubs named by their model."""
    return {name: mib for _, name, _, mib in gpu_processes()}


def _command_name(pid: str) -> str:
    try:
        return open(f"/proc/{pid}/comm").read().strip()
    except OSError:
        return f"pid {pid}"


def memory_per_image(url: str) -> dict:
    """Whole-device memory peaks (pynvml) while batches of 1, 2, 4, 8 prompts run, in increasing order; a batch that
    fails (out of memory on a smaller card) is recorded with its error, and larger ones are not tried."""
    import tritonclient.grpc as grpcclient

    from flux_async.measure.gpu import peak_memory_during
    from flux_async.targets.bls_inputs import bls_inputs

    client = grpcclient.InferenceServerClient(url)
    peaks, failed = {}, {}
    for n in (1, 2, 4, 8):
        try:
            peaks[n] = peak_memory_during(lambda n=n: client.infer(
                "bls", bls_inputs(grpcclient, [PROMPT] * n, seeds=list(range(n)), height=SIZE, width=SIZE,
                                  num_inference_steps=STEPS, max_sequence_length=256), client_timeout=600))
        except Exception as exc:
            failed[n] = f"{type(exc).__name__}: {exc}"[:500]
            break
    pairs = [(a, b) for a, b in ((1, 2), (2, 4), (4, 8)) if a in peaks and b in peaks]
    return {"peak_gib": {n: v / 2**30 for n, v in peaks.items()}, "failed": failed,
            "gib_per_added_image": {f"{a}->{b}": (peaks[b] - peaks[a]) / (b - a) / 2**30 for a, b in pairs}}


def main() -> None:
    global SIZE, CUDA_GRAPHS
    parser = argparse.ArgumentParser()
    parser.add_argument("--tritonserver", default=None, help="default: the one bundled in nvidia-pytriton")
    parser.add_argument("--weights-spec", default="preset:flux1-schnell", help="a preset or a weights folder")
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--eager", action="store_true", help="serve without CUDA graphs")
    parser.add_argument("--in-process-after", action="store_true",
                        help="time FluxPipeline (batch 1, transformer step) again after the served runs")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    CUDA_GRAPHS = "0" if args.eager else "1"
    SIZE = args.size
    report = {"gpu": torch.cuda.get_device_name(0) if GPU else "none (CPU dry run)", "weights": args.weights_spec,
              "size": SIZE, "steps": STEPS, "dtype": "bfloat16" if GPU else "float32", "cuda_graphs": not args.eager}

    def dump():  # after every part: a run cut short still leaves what it measured
        with open(args.out, "w") as out:
            json.dump(report, out, indent=1)

    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:  # its own process: its GPU memory is freed after
        report["in_process"] = pool.apply(in_process, (args.weights_spec, SIZE))
    print(json.dumps(report["in_process"]), flush=True)
    dump()
    report["served"] = {}
    served(args.tritonserver, args.weights_spec, report["served"], dump)
    if args.in_process_after:  # the same GPU after minutes of load: are the clocks what they were?
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            report["in_process_after"] = pool.apply(in_process, (args.weights_spec, SIZE, True))
        print(json.dumps(report["in_process_after"]), flush=True)
        dump()

    def row(prompts):
        return next(r for r in report["served"]["runs"] if (r["prompts_per_request"], r["concurrency"]) == (prompts, 1))

    one, four = row(1), row(4)
    # against the faster in-process figure (before or after the served rows): in-process varies between runs
    report["in_process_batch1_ms_fastest"] = min(r["batch1_ms"] for r in (report["in_process"],
                                                                         report.get("in_process_after")) if r)
    report["overhead_ratio_batch1"] = one["latency_ms"]["p50"] / report["in_process_batch1_ms_fastest"]
    report["images_per_s_gain_4_vs_1"] = four["images_per_s"] / one["images_per_s"]
    report["in_process_images_per_s_gain_4_vs_1"] = (report["in_process"]["batch1_ms"]
                                                     / report["in_process"]["batch4_ms_per_image"])
    print(json.dumps({k: report[k] for k in ("overhead_ratio_batch1", "images_per_s_gain_4_vs_1",
                                             "in_process_images_per_s_gain_4_vs_1")}), flush=True)
    dump()


if __name__ == "__main__":
    main()
