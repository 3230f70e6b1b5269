"""Why was the served transformer step slower than in-process? The same probe (one FLUX transformer step, eager,
CUDA-event timed, with a kernel profile and the CUDA libraries it mapped) runs in a plain process, in a plain process
with the interpreter's LIBDIR first on LD_LIBRARY_PATH (as the stubs had it), inside a Triton python-backend stub (a
one-model repository, no flux_async serving code), and in a plain process beside that idle server. Answer
(BENCHMARKS.md): LIBDIR on the stubs' library path made torch's attention fall back from cuDNN's kernels.
CPU dry run with tiny weights:
    uv run python benchmarks/gpu/dit_gap.py --weights-spec TINY_DIR --size 128 --out /tmp/gap.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sysconfig
import tempfile
from pathlib import Path

import torch

_LOADED: dict = {}
SETTINGS = ("flash_sdp_enabled", "mem_efficient_sdp_enabled", "math_sdp_enabled", "cudnn_sdp_enabled")
ENV_KEYS = ("LD_LIBRARY_PATH", "LD_PRELOAD", "CUDA_MODULE_LOADING", "CUDA_DEVICE_MAX_CONNECTIONS", "OMP_NUM_THREADS",
            "PYTORCH_CUDA_ALLOC_CONF", "CUBLAS_WORKSPACE_CONFIG", "CUDA_VISIBLE_DEVICES", "NVIDIA_TF32_OVERRIDE")


def probe(spec: str, size: int, runs: int = 12) -> dict:
    """Median CUDA-event milliseconds of one transformer step at batch 1 (random bf16 inputs, 256 text tokens), the
    top kernels of one profiled step, and the torch settings and environment it ran under."""
    from diffusers import FluxPipeline

    from flux_async.pipeline.weights import load_module, resolve_weights

    gpu = torch.cuda.is_available()
    device, dtype = (torch.device("cuda", 0), torch.bfloat16) if gpu else (torch.device("cpu"), torch.float32)
    if "transformer" not in _LOADED:
        _LOADED["transformer"] = load_module(resolve_weights(spec), "transformer", device, dtype)
    transformer = _LOADED["transformer"]
    config, grid = transformer.config, size // 16
    generator = torch.Generator(device).manual_seed(0)
    inputs = dict(hidden_states=torch.randn(1, grid * grid, config.in_channels, device=device, dtype=dtype,
                                            generator=generator),
                  encoder_hidden_states=torch.randn(1, 256, config.joint_attention_dim, device=device, dtype=dtype,
                                                    generator=generator),
                  pooled_projections=torch.randn(1, config.pooled_projection_dim, device=device, dtype=dtype,
                                                 generator=generator),
                  timestep=torch.full((1,), 0.5, device=device, dtype=dtype), guidance=None,
                  txt_ids=torch.zeros(256, 3, device=device, dtype=dtype),
                  img_ids=FluxPipeline._prepare_latent_image_ids(None, grid, grid, device, dtype), return_dict=False)
    samples = []
    with torch.inference_mode():
        for index in range(runs + 2):  # two warm-ups
            if gpu:
                start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                transformer(**inputs)
                stop.record()
                stop.synchronize()
                if index >= 2:
                    samples.append(start.elapsed_time(stop))
        result = {"step_ms": statistics.median(samples) if samples else None, "samples_ms": samples,
                  "pid": os.getpid(), "threads": torch.get_num_threads(),
                  "settings": {name: getattr(torch.backends.cuda, name)() for name in SETTINGS},
                  "bf16_reduced_reduction": torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction,
                  "tf32": torch.backends.cuda.matmul.allow_tf32, "deterministic":
                  torch.are_deterministic_algorithms_enabled(),
                  "env": {key: os.environ.get(key) for key in ENV_KEYS}, "libraries": cuda_libraries()}
        result["kernels"] = kernel_profile(lambda: transformer(**inputs)) if gpu else []
    return result


def cuda_libraries(pid: str = "self") -> list[str]:
    """The CUDA libraries (cuBLAS, cuDNN and its engines, NVRTC, ...) a process has mapped."""
    try:
        maps = Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        maps = ""
    keys = ("cublas", "cudnn", "nvrtc", "cudart", "nvJitLink", "cufft", "curand")
    return sorted({line.split()[-1] for line in maps.splitlines() if any(k in line for k in keys)})


def kernel_profile(step, top: int = 25) -> list:
    """[(kernel, calls, total µs)] of one profiled step, longest first; or the reason there is none."""
    try:
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize()
        rows = [(e.key, e.count, round(e.device_time_total, 1)) for e in prof.key_averages()
                if e.device_time_total > 0]
        return sorted(rows, key=lambda r: -r[2])[:top]
    except Exception as exc:  # CUPTI unavailable in this process
        return [f"profiler failed: {type(exc).__name__}: {exc}"]


MODEL_PY = '''
import importlib.util, json
import numpy as np
import triton_python_backend_utils as pb_utils

spec = importlib.util.spec_from_file_location("dit_gap", {path!r})
dit_gap = importlib.util.module_from_spec(spec)
spec.loader.exec_module(dit_gap)


class TritonPythonModel:
    def execute(self, requests):
        out = []
        for request in requests:
            runs = int(pb_utils.get_input_tensor_by_name(request, "runs").as_numpy().reshape(-1)[0])
            result = dit_gap.probe({spec!r}, {size}, runs)
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor(
                "result", np.array([json.dumps(result).encode()], dtype=np.object_))]))
        return out
'''

CONFIG = '''name: "dit_probe"
backend: "python"
max_batch_size: 0
input [ { name: "runs" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "result" data_type: TYPE_STRING dims: [ 1 ] } ]
instance_group [ { count: 1 kind: %s } ]
'''


def probe_repository(spec: str, size: int) -> Path:
    """A one-model repository whose model runs `probe` inside the python-backend stub."""
    root = Path(tempfile.mkdtemp(prefix="dit_probe_"))
    (root / "dit_probe" / "1").mkdir(parents=True)
    (root / "dit_probe" / "1" / "model.py").write_text(
        MODEL_PY.format(path=str(Path(__file__).resolve()), spec=spec, size=size))
    kind = "KIND_GPU" if torch.cuda.is_available() else "KIND_CPU"
    (root / "dit_probe" / "config.pbtxt").write_text(CONFIG % kind)
    return root


def in_stub(server, runs: int = 12) -> dict:
    import numpy as np
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.grpc_url)
    value = grpcclient.InferInput("runs", [1], "INT32")
    value.set_data_from_numpy(np.array([runs], dtype=np.int32))
    result = client.infer("dit_probe", [value], client_timeout=900).as_numpy("result")[0]
    return json.loads(result)


def in_plain_process(spec: str, size: int, runs: int = 12) -> dict:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(probe, (spec, size, runs))


def main() -> None:
    from flux_async.launch.triton_server import TritonServer

    parser = argparse.ArgumentParser()
    parser.add_argument("--tritonserver", default=None)
    parser.add_argument("--weights-spec", default="preset:flux1-schnell")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    report: dict = {"gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU dry run)"}

    def record(name: str, result: dict) -> None:
        report[name] = result
        print(json.dumps({name: result.get("step_ms"), "kernels": [k[:2] for k in result.get("kernels", [])[:4]],
                          "libraries": [lib for lib in result.get("libraries", []) if "/usr/lib" in lib]}), flush=True)
        Path(args.out).write_text(json.dumps(report, indent=1))

    record("plain", in_plain_process(args.weights_spec, args.size))
    saved = os.environ.get("LD_LIBRARY_PATH", "")
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [sysconfig.get_config_var("LIBDIR"), saved]))
    record("plain_with_libdir_first", in_plain_process(args.weights_spec, args.size))
    os.environ["LD_LIBRARY_PATH"] = saved
    with TritonServer(model_repository=probe_repository(args.weights_spec, args.size), tritonserver=args.tritonserver,
                      startup_timeout_s=600) as server:
        record("stub", in_stub(server))
        record("plain_beside_server", in_plain_process(args.weights_spec, args.size))


if __name__ == "__main__":
    main()
