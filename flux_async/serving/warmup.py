"""Warm-up at model load: the transformer and the VAE run once per image size a service will see, at batch 1 and 2,
so that compiling (and the recompile that makes the batch dimension dynamic, after which every batch size runs
compiled) happens before Triton reports the model ready rather than inside a user's request. Off by default."""

from __future__ import annotations

import time

import torch

from flux_async import contract
from flux_async.pipeline.generate import Geometry
from flux_async.pipeline.stages import DitStage, VaeStage
from flux_async.pipeline.weights import WeightsSource

BATCHES = (1, 2)  # two batch sizes: the second makes the compiled graphs' batch dimension dynamic


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


@torch.inference_mode()
def warm_transformer(stage: DitStage, source: WeightsSource, sizes: list[tuple[int, int]]) -> float:
    """Predict once per size and batch on random inputs (the variant's default text length); returns seconds."""
    geometry, config, device = Geometry.from_source(source), stage.transformer.config, stage.device
    text_length = contract.DEFAULT_SEQUENCE_LENGTH["dev" if stage.guidance_embeds else "schnell"]
    started = time.perf_counter()
    for height, width in sizes:
        h, w = geometry.latent_grid(height, width)
        for batch in BATCHES:
            guidance = torch.full((batch,), 3.5, device=device) if stage.guidance_embeds else None
            stage.predict(torch.randn(batch, (h // 2) * (w // 2), config.in_channels, device=device),
                          torch.randn(batch, text_length, config.joint_attention_dim, device=device),
                          torch.randn(batch, config.pooled_projection_dim, device=device),
                          torch.full((batch,), 1000.0, device=device), (h // 2, w // 2), guidance)
    return time.perf_counter() - started


@torch.inference_mode()
def warm_vae(stage: VaeStage, source: WeightsSource, sizes: list[tuple[int, int]]) -> float:
    """Decode once per size and batch on random latents; returns seconds."""
    geometry, channels = Geometry.from_source(source), stage.vae.config.latent_channels
    started = time.perf_counter()
    for height, width in sizes:
        h, w = geometry.latent_grid(height, width)
        for batch in BATCHES:
            stage.decode(torch.randn(batch, channels, h, w, device=stage.device))
    return time.perf_counter() - started
