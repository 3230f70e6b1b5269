"""Build the inputs of a `bls` request (docs/bls.md) for tritonclient's HTTP or gRPC module."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def bls_inputs(client_module, prompts: Sequence[str | bytes], **settings) -> list:
    """`InferInput`s for `client_module` (tritonclient.http, .http.aio, .grpc or .grpc.aio); None = server default.
    Settings: seeds, num_inference_steps, guidance_scale, height, width, max_sequence_length, image_encoding."""
    return [make_input(client_module, name, value) for name, value in bls_arrays(prompts, **settings).items()]


def bls_arrays(prompts: Sequence[str | bytes], *, seeds: Sequence[int] | None = None,
               num_inference_steps: int | None = None, guidance_scale: float | None = None,
               height: int | None = None, width: int | None = None,
               max_sequence_length: int | None = None, image_encoding: str | None = None) -> dict[str, np.ndarray]:
    """The request's tensors by input name, with the dtypes of docs/bls.md (settings left None are left out)."""
    encoded = [p.encode("utf-8") if isinstance(p, str) else p for p in prompts]
    arrays = {"prompt": np.array(encoded, dtype=np.object_)}
    scalars = {"num_inference_steps": (num_inference_steps, np.int32), "guidance_scale": (guidance_scale, np.float32),
               "height": (height, np.int32), "width": (width, np.int32),
               "max_sequence_length": (max_sequence_length, np.int32)}
    for name, (value, dtype) in scalars.items():
        if value is not None:
            arrays[name] = np.array([value], dtype=dtype)
    if seeds is not None:
        arrays["seed"] = np.array(list(seeds), dtype=np.int64)
    if image_encoding is not None:
        arrays["image_encoding"] = np.array([image_encoding.encode("utf-8")], dtype=np.object_)
    return arrays


_DATATYPES = {np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64", np.dtype(np.float32): "FP32",
              np.dtype(np.float64): "FP64", np.dtype(np.float16): "FP16", np.dtype(np.object_): "BYTES",
              np.dtype(np.int8): "INT8", np.dtype(np.uint8): "UINT8", np.dtype(np.bool_): "BOOL"}


def datatype(value: np.ndarray) -> str:
    """The Triton datatype of a numpy array."""
    return _DATATYPES[value.dtype]


def make_input(client_module, name: str, value: np.ndarray):
    """One `InferInput` holding `value` (its Triton datatype from the numpy dtype)."""
    tensor = client_module.InferInput(name, list(value.shape), datatype(value))
    tensor.set_data_from_numpy(value)
    return tensor
