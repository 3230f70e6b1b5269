"""What every Triton python model of the pipeline shares: settings, device, tensor conversion, errors, auto-complete.

Imported only inside a python-backend stub (or under the test stand-in), where `triton_python_backend_utils` exists.
"""

from __future__ import annotations

import json
import os
from typing import Any, overload

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from flux_async import contract
from flux_async.pipeline.speedups import SWITCHES, Speedups, parse_sizes
from flux_async.pipeline.weights import WeightsSource, resolve_weights

_published: list = []  # the stub drops a metric whose Python object is collected


def parse_args(args: dict | None) -> dict:
    """The model's config as a dict (empty when a test calls `initialize({})`)."""
    args = args or {}
    return json.loads(args["model_config"]) if "model_config" in args else {}


@overload
def parameter(config: dict, key: str, env: str | None, default: str) -> str: ...


@overload
def parameter(config: dict, key: str, env: str | None = None, default: None = None) -> str | None: ...


def parameter(config: dict, key: str, env: str | None = None, default: str | None = None) -> str | None:
    """A config.pbtxt string parameter, else an environment variable, else `default`."""
    value = config.get("parameters", {}).get(key, {}).get("string_value")
    if value:
        return value
    return os.environ.get(env, default) if env else default


def trace_enabled(config: dict) -> bool:
    """FLUX_ASYNC_TRACE (or the `trace` parameter) asks for per-request and per-batch timings in the server log."""
    return parameter(config, "trace", contract.ENV_TRACE, "") not in ("", "0")


def setup(args: dict | None) -> tuple[dict, torch.device, torch.dtype, WeightsSource]:
    """Config, device, compute dtype and weights for a model instance; also limits torch's threads."""
    config = parse_args(args)
    threads = int(parameter(config, "torch_threads", contract.ENV_TORCH_THREADS, "1"))
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set in this process
        pass
    args = args or {}
    kind = args.get("model_instance_kind", "CPU")
    if kind == "GPU" and torch.cuda.is_available():
        device = torch.device("cuda", int(args.get("model_instance_device_id", 0)))
        torch.cuda.set_device(device)  # the instance may sit on any GPU the server sees: work there by default
    else:
        device = torch.device("cpu")
    dtype = getattr(torch, contract.compute_dtype_name(device.type == "cuda"))
    source = resolve_weights(parameter(config, "weights", contract.ENV_WEIGHTS))
    return config, device, dtype, source


def speedups(config: dict, device: torch.device) -> Speedups:
    """The model's speed switches: its config.pbtxt parameters, else the environment (pipeline/speedups.py)."""
    return Speedups.for_device(device, {name: parameter(config, name, env) for name, env in SWITCHES.items()})


def publish_settings(model_name: str, dtype: torch.dtype, speedups: Speedups) -> None:
    """Expose what the model runs (dtype, precision, each switch) on Triton's /metrics as `flux_model_settings`, an
    info gauge a load tester reads into its report. Skipped where the stub has no custom-metrics API."""
    family_class = getattr(pb_utils, "MetricFamily", None)
    if family_class is None:
        return
    family = family_class(name=contract.SETTINGS_METRIC, description="FLUX stage model settings (value 1; see labels)",
                          kind=family_class.GAUGE)
    metric = family.Metric(labels={"flux_model": model_name, "dtype": str(dtype).removeprefix("torch."),
                                   **speedups.describe()})
    metric.set(1)
    _published.append((family, metric))


def warm_up(model_name: str, config: dict, run) -> None:
    """`run(sizes)` for the sizes FLUX_ASYNC_WARMUP (or the `warmup` parameter) names, logging how long it took."""
    sizes = parse_sizes(parameter(config, "warmup", contract.ENV_WARMUP))
    if sizes:
        seconds = run(sizes)
        line = json.dumps({"model": model_name, "sizes": sizes, "s": round(seconds, 1)})
        pb_utils.Logger.log_info(f"FLUX_WARMUP {line}")


def complete_config(auto_complete_model_config, model_name: str):
    """Fill the model's inputs and outputs from `contract.py`, resolving COMPUTE tensors to this machine's dtype."""
    compute = contract.compute_dtype_name()
    inputs, outputs = contract.MODEL_TENSORS[model_name]
    for spec in inputs:
        entry: dict[str, Any] = {"name": spec.name, "data_type": contract.config_datatype(spec, compute),
                                 "dims": list(spec.dims)}
        if spec.optional:
            entry["optional"] = True
        auto_complete_model_config.add_input(entry)
    for spec in outputs:
        auto_complete_model_config.add_output({"name": spec.name, "dims": list(spec.dims),
                                               "data_type": contract.config_datatype(spec, compute)})
    return auto_complete_model_config


def input_tensor(request, name: str) -> torch.Tensor | None:
    """A numeric input as a torch tensor (zero-copy through DLPack, CPU or GPU), or None when absent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else torch.from_dlpack(tensor.to_dlpack())


def input_array(request, name: str) -> np.ndarray | None:
    """An input as a numpy array (BYTES and small host-side inputs), or None when absent."""
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    return tensor.as_numpy() if tensor.is_cpu() else torch.from_dlpack(tensor.to_dlpack()).cpu().numpy()


def output_tensor(name: str, value: torch.Tensor):
    """A torch tensor as a Triton output (DLPack: no copy, stays on its device)."""
    value = value.contiguous()
    if not value.is_cuda:
        return pb_utils.Tensor.from_dlpack(name, value)
    # torch exports a CUDA tensor only while its device is the calling thread's current one, and bls runs requests
    # on threads of its own: on a server that sees several GPUs, an instance on GPU 3 met "current device 0".
    with torch.cuda.device(value.device):
        return pb_utils.Tensor.from_dlpack(name, value)


def error_response(message: str, code=None):
    """A response carrying a TritonError (INVALID_ARG unless told otherwise)."""
    code = pb_utils.TritonError.INVALID_ARG if code is None else code
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))
