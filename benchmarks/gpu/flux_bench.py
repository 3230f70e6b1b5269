"""FLUX.1-schnell-sized pipeline on one GPU (random weights, bf16, 1024², 4 steps), side by side per variant of the
speed switches (flux_async/pipeline/speedups.py): `eager` (no compile, no fused QKV, no channels_last; CUDA graphs on,
the server before these switches), `bf16` (the default: every lossless switch on) and `fp8` (bf16 plus torchao fp8).
Part `in-process`: FluxPipeline in this process per variant (latency at batch 1 and 4, per-stage times, compile time,
peak memory). Part `served`: triton_models/ per variant, driven by flux_async (p50 and images/s for 1 and 4 prompts per
request, FP32 and UINT8 images; per-stage device times from the server's trace; start time and first-request latency,
cold and warm compile cache; memory per process). Each variant's images of two reference requests go to
--images DIR as float16 .npz (compared on a CPU by compare_flux_images.py). Writes JSON to --out after every part.
Run by run_flux_bench.sh. A dry run on a CPU with the tiny weights checks the script itself:
    uv run python benchmarks/gpu/flux_bench.py --weights-spec TINY_DIR --size 128 --variants eager,bf16 \
        --out /tmp/b.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import io
import json
import os
import statistics
import threading
import time

import numpy as np
import torch
from dit_gap import cuda_libraries  # this script's folder is on sys.path

PROMPT = "A cat holding a sign that says hello world"
SIZE, STEPS = 1024, 4
GPU = torch.cuda.is_available()
WARMUP = None  # --warmup: the served variants' FLUX_ASYNC_WARMUP
REFERENCE_PROMPTS = [PROMPT, "A lighthouse at dusk"]  # each alone, seeds 0 and 1: the images compared across variants
# the environment of each variant (served: the server's; in-process: this process's); CUDA graphs stay on throughout
VARIANTS = {
    "eager": {"FLUX_ASYNC_COMPILE": "0", "FLUX_ASYNC_FUSE_QKV": "0", "FLUX_ASYNC_CHANNELS_LAST": "0"},
    "bf16": {"FLUX_ASYNC_COMPILE": "1", "FLUX_ASYNC_FUSE_QKV": "1", "FLUX_ASYNC_CHANNELS_LAST": "1"},
    "fp8": {"FLUX_ASYNC_COMPILE": "1", "FLUX_ASYNC_FUSE_QKV": "1", "FLUX_ASYNC_CHANNELS_LAST": "1",
            "FLUX_ASYNC_PRECISION": "fp8"},
    # compile alone: against eager, compile's gain; against bf16, fused QKV's (transformer) and channels_last's (VAE)
    "compiled": {"FLUX_ASYNC_COMPILE": "1", "FLUX_ASYNC_FUSE_QKV": "0", "FLUX_ASYNC_CHANNELS_LAST": "0"},
}


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


def save_images(path: str | None, images: dict[str, np.ndarray]) -> None:
    """The reference images ({prompt index: [3, H, W] in [0, 1]}) as float16 .npz (a GPU call returns 16 MB a file)."""
    if path:
        np.savez_compressed(path, **{key: value.astype(np.float16) for key, value in images.items()})


def in_process(spec: str, size: int, variant: str, images_path: str | None = None) -> dict:
    """FluxPipeline in this process under `variant`'s switches, with the same weights as the server: the first call
    (compiling), latency at batch 1 and 4, per-stage times, peak memory, the GPU's clocks meanwhile, and the reference
    images."""
    global SIZE
    SIZE = size
    os.environ.update(VARIANTS[variant])
    from flux_async.pipeline.speedups import Speedups, channels_last, prepare_transformer, prepare_vae

    device = torch.device("cuda", 0) if GPU else torch.device("cpu")
    dtype = torch.bfloat16 if GPU else torch.float32
    speedups = Speedups.for_device(device)
    pipe, source = load_pipeline(spec, device, dtype)
    pipe.set_progress_bar_config(disable=True)
    prepare_transformer(pipe.transformer, speedups)
    prepare_vae(pipe.vae, speedups)
    config = pipe.transformer.config

    def generate(batch: int, prompts=None, seeds=None):
        prompts = prompts or [PROMPT] * batch
        seeds = seeds if seeds is not None else list(range(batch))
        return pipe(prompt=prompts, generator=[torch.Generator("cpu").manual_seed(i) for i in seeds],
                    num_inference_steps=STEPS, guidance_scale=0.0, height=SIZE, width=SIZE, max_sequence_length=256,
                    output_type="pt").images

    result: dict = {"variant": variant, "speedups": speedups.describe()}
    started = time.perf_counter()
    generate(1)
    sync()
    result["first_call_ms"] = (time.perf_counter() - started) * 1000  # compiles the transformer and the VAE
    if GPU:
        torch.cuda.reset_peak_memory_stats()
    for batch in (1, 4):
        with GpuWatch() as watch:  # batch 1: as many back-to-back images as the served batch-1 row
            ms = timed(lambda batch=batch: generate(batch), runs=6 if batch == 1 else 2)
        result[f"batch{batch}_ms"] = ms
        result[f"batch{batch}_ms_per_image"] = ms / batch
        result[f"batch{batch}_gpu"] = watch.summary()
        if GPU:
            result[f"batch{batch}_peak_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30
    save_images(images_path, {str(i): generate(1, [prompt], [i])[0].float().cpu().numpy()
                              for i, prompt in enumerate(REFERENCE_PROMPTS)})
    with torch.inference_mode(), GpuWatch() as watch:
        result["clip_ms"] = timed(lambda: pipe._get_clip_prompt_embeds(PROMPT, device=device))
        result["t5_ms"] = timed(lambda: pipe._get_t5_prompt_embeds(PROMPT, max_sequence_length=256, device=device))
        latents = torch.randn(1, (SIZE // 16) ** 2, config.in_channels, device=device, dtype=dtype)
        embeds = torch.randn(1, 256, config.joint_attention_dim, device=device, dtype=dtype)
        pooled = torch.randn(1, config.pooled_projection_dim, device=device, dtype=dtype)
        img_ids = pipe._prepare_latent_image_ids(1, SIZE // 16, SIZE // 16, device, dtype)
        txt_ids = torch.zeros(256, 3, device=device, dtype=dtype)
        result["dit_step_ms"] = timed(lambda: pipe.transformer(
            hidden_states=latents, timestep=torch.full((1,), 0.5, device=device, dtype=dtype), guidance=None,
            pooled_projections=pooled, encoder_hidden_states=embeds, txt_ids=txt_ids, img_ids=img_ids,
            return_dict=False), runs=10)
        scale = 2 ** (len(pipe.vae.config.block_out_channels) - 1)
        vae_latents = channels_last(torch.randn(1, pipe.vae.config.latent_channels, SIZE // scale, SIZE // scale,
                                                device=device, dtype=dtype), speedups)
        result["vae_ms"] = timed(lambda: pipe.vae.decode(vae_latents, return_dict=False), runs=5)
    result["stages_gpu"] = watch.summary()
    result["libraries"] = cuda_libraries()
    pipe = None  # the closures above hold it: drop it so gc.collect frees its GPU memory
    gc.collect()
    return result


def first_request_ms(url: str) -> float:
    """Wall milliseconds of one 1-prompt request (after a start: it pays for whatever compiles on first use)."""
    import tritonclient.grpc as grpcclient

    from flux_async.targets.bls_inputs import bls_inputs

    client = grpcclient.InferenceServerClient(url)
    started = time.perf_counter()
    client.infer("bls", bls_inputs(grpcclient, [PROMPT], seeds=[0], height=SIZE, width=SIZE,
                                   num_inference_steps=STEPS, max_sequence_length=256), client_timeout=900)
    return (time.perf_counter() - started) * 1000


def reference_images(url: str) -> dict[str, np.ndarray]:
    """Each reference prompt alone (seed = its index), FP32 images."""
    import tritonclient.grpc as grpcclient

    from flux_async.targets.bls_inputs import bls_inputs

    client = grpcclient.InferenceServerClient(url)
    return {str(i): client.infer("bls", bls_inputs(grpcclient, [prompt], seeds=[i], height=SIZE, width=SIZE,
                                                   num_inference_steps=STEPS, max_sequence_length=256),
                                 client_timeout=900).as_numpy("images")[0]
            for i, prompt in enumerate(REFERENCE_PROMPTS)}


def start_server(tritonserver: str | None, spec: str, env: dict):
    from flux_async.launch.triton_server import TritonServer

    server = TritonServer(weights=spec, tritonserver=tritonserver, startup_timeout_s=900, env=env)
    started = time.perf_counter()
    server.start()
    return server, time.perf_counter() - started


def served(tritonserver: str | None, spec: str, variant: str, rows: list[tuple[int, int, str]], cache: str,
           results: dict, dump, images_path: str | None = None, restart: bool = False, memory: bool = False) -> None:
    """Serve `spec` under `variant` with an empty compile cache `cache`: start time and first request (cold), the
    reference images, then each row (prompts, concurrency, image encoding) over gRPC; with `restart`, start again on
    the now-filled cache (warm) and time the first request again. (The device image lacks tritonclient's HTTP
    dependencies, and the carried wheels are near the tool's size limit.)"""
    env = {"FLUX_ASYNC_TRACE": "1", "FLUX_ASYNC_COMPILE_CACHE": cache, **VARIANTS[variant],
           **({"FLUX_ASYNC_WARMUP": WARMUP} if WARMUP else {})}
    results.update(variant=variant, runs=[])
    server, results["start_s"] = start_server(tritonserver, spec, env)
    try:
        results["first_request_ms"] = first_request_ms(server.grpc_url)
        dump()
        save_images(images_path, reference_images(server.grpc_url))
        results["libraries"] = {model: cuda_libraries(pid) for pid, model in stub_models().items()}
        for prompts, concurrency, encoding in rows:
            row = measure_row(server, prompts, concurrency, encoding)
            results["runs"].append(row)
            dump()
            print(json.dumps({k: row[k] for k in ("prompts_per_request", "concurrency", "image_encoding",
                                                   "images_per_s")}
                             | {"p50": row["latency_ms"]["p50"], "stage_device_ms": row["stage_device_ms"]}),
                  flush=True)
        results["per_process_mib"] = per_process_memory()
        if memory:
            results["memory"] = memory_per_image(server.grpc_url)
        results["server_log_tail"] = server.log_text()[-2000:]
    finally:
        server.stop()
    dump()
    if restart:  # the same cache, now filled: what a restarted server pays
        server, results["warm_start_s"] = start_server(tritonserver, spec, env)
        try:
            results["warm_first_request_ms"] = first_request_ms(server.grpc_url)
        finally:
            server.stop()
        dump()


def uint8_contract() -> dict:
    """bls's contract asking for 8-bit NHWC images (image_encoding uint8, docs/bls.md)."""
    from flux_async.scenario.model_contract import BLS, contract_yaml

    contract = contract_yaml(BLS)
    contract["outputs"]["images"] = {"name": "images_uint8", "datatype": "UINT8", "format": "tensor",
                                     "layout": "NHWC", "range": "0..255"}
    contract["constants"] = [{"name": "image_encoding", "datatype": "BYTES", "shape": "[1]", "value": "uint8"}]
    return contract


def measure_row(server, prompts: int, concurrency: int, encoding: str = "fp32") -> dict:
    """One closed-loop flux_async run (a warm-up phase, then the measured one) and what the server logged meanwhile."""
    from rich.console import Console

    from flux_async.run.runner import RunOptions, run_scenario
    from flux_async.scenario.config import parse_scenario

    requests = max(3, 8 // prompts) if concurrency == 1 else max(2 * concurrency, 12 // prompts)
    target = {"url": server.grpc_url, "request_timeout": "300s"}
    if encoding == "uint8":
        target.update(model="bls", contract=uint8_contract())
    scenario = parse_scenario({
        "name": f"gpu-{prompts}p-c{concurrency}-{encoding}", "target": target, "verify": False,
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
    return {"prompts_per_request": prompts, "concurrency": concurrency, "image_encoding": encoding,
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


SERVED_ROWS = {  # (prompts, concurrency, image encoding): what one 10-minute device call holds for all three variants
    "bf16": [(1, 1, "fp32"), (1, 1, "uint8"), (4, 1, "uint8"), (4, 1, "fp32"), (1, 2, "uint8")],
    "fp8": [(1, 1, "fp32"), (1, 1, "uint8"), (4, 1, "uint8")],
    "eager": [(1, 1, "fp32"), (1, 1, "uint8"), (4, 1, "uint8")],
    "compiled": [(1, 1, "fp32")],
}


def main() -> None:
    global SIZE, WARMUP
    parser = argparse.ArgumentParser()
    parser.add_argument("--tritonserver", default=None, help="default: the one bundled in nvidia-pytriton")
    parser.add_argument("--weights-spec", default="preset:flux1-schnell", help="a preset or a weights folder")
    parser.add_argument("--size", type=int, default=SIZE)
    parser.add_argument("--part", choices=("in-process", "served", "all"), default="all")
    parser.add_argument("--variants", default="eager,bf16,fp8", help="comma-separated, of " + ", ".join(VARIANTS))
    parser.add_argument("--images", default=None, help="folder for each variant's reference images (.npz)")
    parser.add_argument("--cache", default="/tmp/flux-compile-cache", help="compile caches, one folder per variant "
                                                                         "below this (emptied first)")
    parser.add_argument("--memory", action="store_true", help="served bf16: GPU memory while 1, 2, 4, 8 prompts run")
    parser.add_argument("--warmup", default=None, metavar="SIZES",
                        help="served: FLUX_ASYNC_WARMUP for the server (e.g. 1024x1024): compile at load, not in the "
                             "first request")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    SIZE, WARMUP = args.size, args.warmup
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; known: {', '.join(VARIANTS)}")
    report: dict = {"gpu": torch.cuda.get_device_name(0) if GPU else "none (CPU dry run)",
                    "weights": args.weights_spec, "size": SIZE, "steps": STEPS,
                    "dtype": "bfloat16" if GPU else "float32", "variants": {v: VARIANTS[v] for v in variants},
                    "torch": torch.__version__, "warmup": args.warmup,
                    "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    if os.path.exists(args.out):  # the other part's results, from an earlier call
        with open(args.out) as existing:
            earlier = json.load(existing)
        report = earlier | report | {"variants": earlier.get("variants", {}) | report["variants"]}

    def dump():  # after every part: a run cut short still leaves what it measured
        with open(args.out, "w") as out:
            json.dump(report, out, indent=1)

    def images(part: str, variant: str) -> str | None:
        return os.path.join(args.images, f"images-{part}-{variant}.npz") if args.images else None

    import multiprocessing
    import shutil

    if args.part in ("in-process", "all"):
        report.setdefault("in_process", {})
        for variant in variants:  # each in its own process: its GPU memory is freed after, its switches its own
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                report["in_process"][variant] = pool.apply(in_process, (args.weights_spec, SIZE, variant,
                                                                        images("in-process", variant)))
            print(json.dumps({k: v for k, v in report["in_process"][variant].items() if k != "libraries"}),
                  flush=True)
            dump()
    if args.part in ("served", "all"):
        report.setdefault("served", {})
        for variant in variants:
            cache = os.path.join(args.cache, variant)
            shutil.rmtree(cache, ignore_errors=True)
            report["served"][variant] = {}
            served(args.tritonserver, args.weights_spec, variant, SERVED_ROWS[variant], cache,
                   report["served"][variant], dump, images("served", variant), restart=variant == "bf16",
                   memory=args.memory and variant == "bf16")
    report["summary"] = summary(report)
    print(json.dumps(report["summary"]), flush=True)
    dump()


def summary(report: dict) -> dict:
    """The issue's figures from whatever parts ran: served p50 at 1 prompt, images/s gain 4 vs 1, served/in-process."""
    found: dict = {}
    for variant, result in report.get("served", {}).items():
        rows = {(r["prompts_per_request"], r["concurrency"], r["image_encoding"]): r for r in result.get("runs", [])}
        for encoding in ("fp32", "uint8"):
            one, four = rows.get((1, 1, encoding)), rows.get((4, 1, encoding))
            if one:
                found[f"{variant}_served_p50_ms_{encoding}"] = one["latency_ms"]["p50"]
            if one and four:
                found[f"{variant}_images_per_s_gain_4_vs_1_{encoding}"] = four["images_per_s"] / one["images_per_s"]
        inproc = report.get("in_process", {}).get(variant)
        if inproc and (1, 1, "fp32") in rows:
            found[f"{variant}_served_over_in_process"] = rows[(1, 1, "fp32")]["latency_ms"]["p50"] / inproc["batch1_ms"]
    return found


if __name__ == "__main__":
    main()
