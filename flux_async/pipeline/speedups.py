"""Speed switches for the FLUX stages: torch.compile of the transformer and the VAE decoder (Inductor, its caches on
disk), a channels_last VAE, fused QKV projections, and fp8 transformer weights (torchao). Each is on by default on a
GPU and off on a CPU, except fp8 (asked for only), and each has its own way off: an environment variable or the
model's config.pbtxt parameter of the same lower-case name (contract.ENV_*). Measured in BENCHMARKS.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from flux_async import contract

PRECISIONS = ("auto", "fp8")
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")  # modes with CUDA graphs of their own would nest ours
SWITCHES = {  # config parameter -> environment variable
    "compile": contract.ENV_COMPILE, "compile_mode": contract.ENV_COMPILE_MODE,
    "channels_last": contract.ENV_CHANNELS_LAST, "fuse_qkv": contract.ENV_FUSE_QKV,
    "precision": contract.ENV_PRECISION,
}
_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
FP8_CAPABILITY = (8, 9)  # float8 matrix products: Ada and Hopper onwards


@dataclass(frozen=True)
class Speedups:
    """Which optimisations a stage applies. `Speedups()` is plain eager PyTorch."""

    compile: bool = False
    compile_mode: str = "default"
    channels_last: bool = False
    fuse_qkv: bool = False
    precision: str = "auto"

    @classmethod
    def for_device(cls, device: torch.device, settings: Mapping[str, str | None] | None = None) -> Speedups:
        """The defaults for `device`, overridden by `settings` ({parameter: value}; default: the environment).
        Raises ValueError naming the setting and its allowed values."""
        if settings is None:
            settings = {name: os.environ.get(env) for name, env in SWITCHES.items()}
        gpu = torch.device(device).type == "cuda"

        def value(name: str) -> str | None:
            raw = settings.get(name)
            return raw.strip().lower() if raw and raw.strip() else None

        def switch(name: str) -> bool:
            raw = value(name)
            if raw is None:
                return gpu
            if raw not in _ON + _OFF:
                raise ValueError(f"{SWITCHES[name]} (parameter {name!r}) must be one of 1/0, true/false, yes/no, "
                                 f"on/off, got {settings[name]!r}")
            return raw in _ON

        def choice(name: str, allowed: tuple[str, ...]) -> str:
            raw = value(name) or allowed[0]
            if raw not in allowed:
                raise ValueError(f"{SWITCHES[name]} (parameter {name!r}) must be one of {', '.join(allowed)}, "
                                 f"got {settings[name]!r}")
            return raw

        return cls(compile=switch("compile"), compile_mode=choice("compile_mode", COMPILE_MODES),
                   channels_last=switch("channels_last"), fuse_qkv=switch("fuse_qkv"),
                   precision=choice("precision", PRECISIONS))

    def describe(self) -> dict[str, str]:
        """The settings as strings (a metric's labels, a report's `server` section)."""
        return {name: ("on" if value is True else "off" if value is False else str(value))
                for name, value in asdict(self).items()}


def parse_sizes(value: str | None) -> list[tuple[int, int]]:
    """'1024x1024,512x768' → [(1024, 1024), (512, 768)] (height x width); '', '0', 'off' → []. Raises ValueError
    naming the setting and the form."""
    text = (value or "").strip().lower()
    if text in ("", "0", "off", "no", "false"):
        return []
    sizes = []
    for item in text.split(","):
        height, _, width = item.strip().partition("x")
        if not (height.isdigit() and width.isdigit() and int(height) % 16 == 0 and int(width) % 16 == 0
                and 16 <= int(height) <= 4096 and 16 <= int(width) <= 4096):
            raise ValueError(f"{contract.ENV_WARMUP} (parameter 'warmup') must be 'off' or sizes HEIGHTxWIDTH, "
                             f"multiples of 16 in [16, 4096], comma-separated (e.g. 1024x1024,512x512); got {value!r}")
        sizes.append((int(height), int(width)))
    return sizes


def check_environment() -> None:
    """The switches and the warm-up sizes this environment gives the models, as a GPU would read them; raises
    ValueError naming the variable (what `serve` checks before starting Triton)."""
    Speedups.for_device(torch.device("cuda"))
    parse_sizes(os.environ.get(contract.ENV_WARMUP))


def compile_cache() -> Path:
    """Where Inductor keeps compiled graphs and kernels: FLUX_ASYNC_COMPILE_CACHE, else TORCHINDUCTOR_CACHE_DIR, else
    <flux_async cache>/inductor. Set for this process (and the compile workers it starts); delete it to invalidate."""
    from flux_async.pipeline.weights import cache_dir

    folder = (os.environ.get(contract.ENV_COMPILE_CACHE) or os.environ.get("TORCHINDUCTOR_CACHE_DIR")
              or str(cache_dir() / "inductor"))
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    return Path(folder)


def compile_module(module: torch.nn.Module, speedups: Speedups) -> None:
    """`module.compile()` in place when compiling is on (its first call for each new input shape compiles)."""
    if not speedups.compile:
        return
    compile_cache()
    import torch._inductor.config as inductor

    inductor.conv_1x1_as_mm = True  # the VAE's 1x1 convolutions as matrix products (diffusers' advice)
    module.compile(mode=None if speedups.compile_mode == "default" else speedups.compile_mode)


UNFUSED = ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj")


def prepare_transformer(transformer: torch.nn.Module, speedups: Speedups) -> None:
    """In place, in this order: fuse QKV, quantize to fp8, compile."""
    if speedups.fuse_qkv:
        transformer.fuse_qkv_projections()  # type: ignore[operator]
        drop_unfused(transformer)
    if speedups.precision == "fp8":
        quantize_fp8(transformer)
    compile_module(transformer, speedups)


def drop_unfused(transformer: torch.nn.Module) -> None:
    """Free the separate Q, K, V projections of every fused attention (its forward reads only the fused ones): 2.15 B
    parameters of a FLUX.1 transformer, 4.3 GB in bf16, and no time spent quantizing them."""
    for module in transformer.modules():
        if getattr(module, "fused_projections", False):
            for name in UNFUSED:
                if isinstance(getattr(module, name, None), torch.nn.Module):
                    delattr(module, name)


def prepare_vae(vae: torch.nn.Module, speedups: Speedups) -> None:
    """In place: channels_last weights, then compile the decoder."""
    if speedups.channels_last:
        vae.to(memory_format=torch.channels_last)
    compile_module(vae.decoder, speedups)  # type: ignore[arg-type]


def quantize_fp8(transformer: torch.nn.Module) -> None:
    """The transformer blocks' linear layers to float8 weights with dynamic row-wise float8 activations (torchao);
    the embedders and the output projection stay in the compute dtype."""
    device = next(transformer.parameters()).device
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < FP8_CAPABILITY:
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else "a CPU"
        raise ValueError(f"{contract.ENV_PRECISION}=fp8 needs an NVIDIA GPU of compute capability "
                         f"{FP8_CAPABILITY[0]}.{FP8_CAPABILITY[1]} or newer (Ada, Hopper); this model runs on {where}")
    try:
        from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_
    except ImportError as exc:
        raise ValueError(f"{contract.ENV_PRECISION}=fp8 needs torchao (uv sync --extra fp8, or pip install "
                         f"torchao): {exc}") from None
    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()), filter_fn=_in_blocks)


def _in_blocks(module: torch.nn.Module, name: str) -> bool:
    blocks = ("transformer_blocks.", "single_transformer_blocks.")
    return isinstance(module, torch.nn.Linear) and name.startswith(blocks)


def channels_last(tensor: torch.Tensor, speedups: Speedups) -> torch.Tensor:
    """A 4-D input in the memory format the VAE's weights are in."""
    return tensor.contiguous(memory_format=torch.channels_last) if speedups.channels_last else tensor

