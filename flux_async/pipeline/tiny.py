"""`make-tiny-flux`: a complete, tiny, random `FluxPipeline.save_pretrained` folder, byte-identical per seed."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flux_async.pipeline.architectures import component_configs
from flux_async.pipeline.tokenizers import build_clip_tokenizer, build_t5_tokenizer

_COMPONENTS = ("text_encoder", "text_encoder_2", "transformer", "vae")


def build_module(name: str, size: str = "tiny", variant: str = "schnell", seed: int = 0, device=None, dtype=None,
                 t5_vocab_size: int = 32128):
    """Instantiate one torch component with seeded random weights, directly on `device` in `dtype`."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    cfg = component_configs(size, variant, t5_vocab_size=t5_vocab_size)[name]
    # torch modules, though mypy sees diffusers' classes as its dummy placeholders, not nn.Module subclasses
    builders: dict[str, Callable[[], Any]] = {
        "text_encoder": lambda: CLIPTextModel(CLIPTextConfig(**cfg)),
        "text_encoder_2": lambda: T5EncoderModel(T5Config(**cfg)),
        "transformer": lambda: FluxTransformer2DModel(**cfg),
        "vae": lambda: AutoencoderKL(**cfg),
    }
    torch.manual_seed(seed * 1000 + _COMPONENTS.index(name))  # weights depend only on (seed, component)
    previous = torch.get_default_dtype()
    try:
        if dtype is not None and dtype.is_floating_point:
            torch.set_default_dtype(dtype)  # build in the target dtype: a 12B model never exists in fp32
        with torch.device(device or "cpu"):
            module = builders[name]()
    finally:
        torch.set_default_dtype(previous)
    return module.eval().requires_grad_(False)


def build_components(size: str = "tiny", variant: str = "schnell", seed: int = 0, device=None, dtype=None) -> dict:
    """Every FLUX component with seeded random weights (in memory), as `FluxPipeline(**components)` takes them."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    tokenizer, tokenizer_2 = build_clip_tokenizer(), build_t5_tokenizer(seed)
    t5_vocab = len(tokenizer_2) if size == "tiny" else 32128
    modules = {name: build_module(name, size, variant, seed, device, dtype, t5_vocab) for name in _COMPONENTS}
    scheduler = FlowMatchEulerDiscreteScheduler(**component_configs(size, variant)["scheduler"])
    return dict(modules, scheduler=scheduler, tokenizer=tokenizer, tokenizer_2=tokenizer_2)


def make_tiny_flux(directory: str | os.PathLike, seed: int = 0, variant: str = "schnell") -> Path:
    """Write the tiny pipeline to `directory` (atomically: built beside it, then renamed into place)."""
    from diffusers import FluxPipeline

    target = Path(directory).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        pipeline = FluxPipeline(**build_components("tiny", variant, seed))
        # diffusers' import-time typing resolves FluxPipeline to its dummy placeholder, which lacks the method
        pipeline.save_pretrained(staging, safe_serialization=True)  # type: ignore[attr-defined]
        for path in staging.rglob("*"):  # save_pretrained writes some files 0600; make the folder shareable
            path.chmod(0o755 if path.is_dir() else 0o644)
        staging.chmod(0o755)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
