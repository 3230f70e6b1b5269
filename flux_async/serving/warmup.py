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
