"""Tensor names, dtypes, shapes and limits of every model in `triton_models/`.

Imported by the Triton models, the clients and the tests: the single source of truth. The `bls` part is fixed by
docs/bls.md; the stage-model tensors are ours. Tensors between stages travel in the *compute dtype* (FP32 on CPU,
BF16 on a GPU): their config.pbtxt entries leave `data_type` out and `auto_complete_config` fills it in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

# ---- bls / bls_stream (docs/bls.md) ----------------------------------------------------------------------------------
BLS = "bls"
BLS_STREAM = "bls_stream"
CLIP_ENCODER = "clip_encoder"
T5_ENCODER = "t5_encoder"
DIT_TRANSFORMER = "dit_transformer"
VAE_DECODER = "vae_decoder"
STAGE_MODELS = (CLIP_ENCODER, T5_ENCODER, DIT_TRANSFORMER, VAE_DECODER)
ALL_MODELS = (BLS, BLS_STREAM) + STAGE_MODELS

MAX_PROMPTS = 8
MIN_STEPS, MAX_STEPS = 1, 100
MIN_GUIDANCE, MAX_GUIDANCE = 0.0, 30.0
MIN_SIZE, MAX_SIZE, SIZE_MULTIPLE = 64, 2048, 16
MIN_SEQUENCE_LENGTH, MAX_SEQUENCE_LENGTH = 1, 512
MAX_SEED = 2**63 - 1

# Memory budget of one bls request: prompts x height x width. The default allows 8 images of 1024² (or 2 of 2048²);
# set the bls parameter max_pixels_per_request or FLUX_ASYNC_MAX_PIXELS to what the deployment's GPU holds.
DEFAULT_MAX_PIXELS_PER_REQUEST = 8 * 1024 * 1024
ENV_MAX_PIXELS = "FLUX_ASYNC_MAX_PIXELS"

DEFAULT_STEPS = 4
DEFAULT_SIZE = 1024
# image_encoding: the output each value fills (fp32, the default, is the only one before image_encoding existed)
IMAGE_ENCODINGS = ("fp32", "uint8", "png")
DEFAULT_IMAGE_ENCODING = "fp32"
IMAGE_OUTPUTS = {"fp32": "images", "uint8": "images_uint8", "png": "images_png"}
# Defaults that depend on the weights: "dev" (guidance-embedded transformer) or "schnell".
DEFAULT_GUIDANCE = {"schnell": 0.0, "dev": 3.5}
DEFAULT_SEQUENCE_LENGTH = {"schnell": 256, "dev": 512}


@dataclass(frozen=True)
class TensorSpec:
    """One model input or output: Triton datatype ('COMPUTE' = the compute dtype), dims, optional."""

    name: str
    datatype: str
    dims: tuple[int, ...]
    optional: bool = False


BLS_INPUTS = (
    TensorSpec("prompt", "BYTES", (-1,)),
    TensorSpec("num_inference_steps", "INT32", (1,), optional=True),
    TensorSpec("guidance_scale", "FP32", (1,), optional=True),
    TensorSpec("height", "INT32", (1,), optional=True),
    TensorSpec("width", "INT32", (1,), optional=True),
    TensorSpec("seed", "INT64", (-1,), optional=True),
    TensorSpec("max_sequence_length", "INT32", (1,), optional=True),
    TensorSpec("image_encoding", "BYTES", (1,), optional=True),
)
BLS_OUTPUTS = (
    TensorSpec("images", "FP32", (-1, 3, -1, -1)),
    TensorSpec("seeds", "INT64", (-1,)),
    TensorSpec("images_uint8", "UINT8", (-1, -1, -1, 3)),  # image_encoding "uint8": [N, H, W, 3]
    TensorSpec("images_png", "BYTES", (-1,)),  # image_encoding "png": one PNG file per image
)
BLS_STREAM_OUTPUTS = BLS_OUTPUTS + (
    TensorSpec("step", "INT32", (1,)),
    TensorSpec("total_steps", "INT32", (1,)),
)



def image_tolerance(height: int, width: int) -> float:
    """Max abs difference allowed between a served fp32 image and FluxPipeline's for the same prompt and seed.

    Batched kernels round differently from single runs, more so at large sizes. Measured on the tiny weights (fp32,
    CPU, 3 prompts batched against 3 single runs): 1.6e-5 at 256², 9.0e-5 at 512², 6.8e-4 at 1024² (README).
    """
    return 1e-4 if height * width <= 256 * 256 else 2e-3


# ---- stage models (max_batch_size >= 8, dynamic batching; dims exclude the batch dimension) -------------------------
STAGE_MAX_BATCH_SIZE = 8
COMPUTE = "COMPUTE"

CLIP_INPUTS = (TensorSpec("text", "BYTES", (1,)),)
CLIP_OUTPUTS = (TensorSpec("pooled_prompt_embeds", COMPUTE, (-1,)),)

T5_INPUTS = (TensorSpec("text", "BYTES", (1,)), TensorSpec("max_sequence_length", "INT32", (1,)))
T5_OUTPUTS = (TensorSpec("prompt_embeds", COMPUTE, (-1, -1)),)

DIT_INPUTS = (
    TensorSpec("hidden_states", COMPUTE, (-1, -1)),  # packed latents [seq, in_channels]
    TensorSpec("encoder_hidden_states", COMPUTE, (-1, -1)),  # T5 embeddings [L, d]
    TensorSpec("pooled_projections", COMPUTE, (-1,)),  # CLIP pooled [hidden]
    TensorSpec("timestep", COMPUTE, (1,)),  # the scheduler's t (0..1000); the model divides by 1000 as FluxPipeline
    TensorSpec("latent_size", "INT32", (2,)),  # packed grid (height, width): seq = height * width
    TensorSpec("guidance", "FP32", (1,), optional=True),  # only for guidance-embedded transformers
)
DIT_OUTPUTS = (TensorSpec("noise_pred", COMPUTE, (-1, -1)),)

VAE_INPUTS = (TensorSpec("latents", COMPUTE, (-1, -1, -1)),)  # unpacked, unscaled latents [C, h, w]
VAE_OUTPUTS = (TensorSpec("images", "FP32", (3, -1, -1)),)

MODEL_TENSORS: dict[str, tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]] = {
    BLS: (BLS_INPUTS, BLS_OUTPUTS),
    BLS_STREAM: (BLS_INPUTS, BLS_STREAM_OUTPUTS),
    CLIP_ENCODER: (CLIP_INPUTS, CLIP_OUTPUTS),
    T5_ENCODER: (T5_INPUTS, T5_OUTPUTS),
    DIT_TRANSFORMER: (DIT_INPUTS, DIT_OUTPUTS),
    VAE_DECODER: (VAE_INPUTS, VAE_OUTPUTS),
}

# ---- run-time settings read by the models (environment, or config.pbtxt parameters of the same lower-case name) -----
ENV_WEIGHTS = "FLUX_ASYNC_WEIGHTS"  # weights folder, or "preset:flux1-schnell" / "preset:flux1-dev"
ENV_DTYPE = "FLUX_ASYNC_DTYPE"  # "float32" | "bfloat16" | "float16"; default float32 on CPU, bfloat16 on GPU
ENV_TORCH_THREADS = "FLUX_ASYNC_TORCH_THREADS"  # intra-op threads per model process (default 1)
ENV_CUDA_GRAPHS = "FLUX_ASYNC_CUDA_GRAPHS"  # "0": stage forwards eager on a GPU (default: through CUDA graphs)
ENV_TRACE = "FLUX_ASYNC_TRACE"  # "1": bls logs each request's part timings (FLUX_TRACE lines in the server log)
# speed switches (flux_async/pipeline/speedups.py): on by default on a GPU, off on a CPU; "0" turns one off
ENV_COMPILE = "FLUX_ASYNC_COMPILE"  # torch.compile of the transformer and the VAE decoder
ENV_COMPILE_MODE = "FLUX_ASYNC_COMPILE_MODE"  # "default" | "max-autotune-no-cudagraphs" (longer compile)
ENV_CHANNELS_LAST = "FLUX_ASYNC_CHANNELS_LAST"  # the VAE's convolutions in channels_last memory format
ENV_FUSE_QKV = "FLUX_ASYNC_FUSE_QKV"  # the transformer's Q, K, V projections as one matrix product
ENV_PRECISION = "FLUX_ASYNC_PRECISION"  # "auto" (the compute dtype) | "fp8" (transformer linears in float8, torchao)
ENV_COMPILE_CACHE = "FLUX_ASYNC_COMPILE_CACHE"  # Inductor's on-disk caches (default: <flux_async cache>/inductor)
# the models' settings on Triton's /metrics: an info gauge, one sample per model, its settings as labels
SETTINGS_METRIC = "flux_model_settings"
ENV_WARMUP = "FLUX_ASYNC_WARMUP"  # "1024x1024,512x512": the transformer and the VAE run each size at load (default off)

TRITON_DTYPES = {"float32": "FP32", "bfloat16": "BF16", "float16": "FP16"}


def compute_dtype_name(on_gpu: bool | None = None) -> str:
    """The torch dtype name every stage computes in: FLUX_ASYNC_DTYPE, else bfloat16 on a GPU and float32 on CPU."""
    name = os.environ.get(ENV_DTYPE, "").strip().lower()
    if name:
        if name not in TRITON_DTYPES:
            raise ValueError(f"{ENV_DTYPE} must be one of {sorted(TRITON_DTYPES)}, got {name!r}")
        return name
    if on_gpu is None:
        import torch

        on_gpu = torch.cuda.is_available()
    return "bfloat16" if on_gpu else "float32"


def triton_datatype(spec: TensorSpec, compute: str) -> str:
    """Resolve a spec's datatype: the compute dtype's Triton name for COMPUTE tensors."""
    return TRITON_DTYPES[compute] if spec.datatype == COMPUTE else spec.datatype


def config_datatype(spec: TensorSpec, compute: str) -> str:
    """The spec's datatype as config.pbtxt spells it (BYTES is TYPE_STRING there)."""
    datatype = triton_datatype(spec, compute)
    return "TYPE_STRING" if datatype == "BYTES" else "TYPE_" + datatype
