"""The FLUX denoising loop over pluggable stages, as in `FluxPipeline.__call__` (steps numbered the same way).

`generate` runs against a `StageRunner`: inside Triton the `bls` model passes one that sends BLS requests to the
stage models; tests and benchmarks pass `InProcessRunner`, which calls the stages directly.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from flux_async.pipeline.weights import WeightsSource


@dataclass(frozen=True)
class GenerationRequest:
    """One validated `bls` request: N prompts with their seeds, the shared sampling settings, and the encoding its
    images are returned in (not used by `generate`)."""

    prompts: tuple[str, ...]
    seeds: tuple[int, ...]
    num_inference_steps: int
    guidance_scale: float
    height: int
    width: int
    max_sequence_length: int
    image_encoding: str = "fp32"


@dataclass(frozen=True)
class Geometry:
    """What the loop needs to know of the weights, read from their configs only (no torch weights loaded)."""

    num_channels_latents: int
    vae_scale_factor: int
    guidance_embeds: bool
    scheduler_config: dict

    @classmethod
    def from_source(cls, source: WeightsSource) -> Geometry:
        transformer, vae = source.transformer_config(), source.vae_config()
        return cls(num_channels_latents=transformer["in_channels"] // 4,
                   vae_scale_factor=2 ** (len(vae["block_out_channels"]) - 1),
                   guidance_embeds=bool(transformer.get("guidance_embeds", False)),
                   scheduler_config=source.scheduler_config())

    def latent_grid(self, height: int, width: int) -> tuple[int, int]:
        """Unpacked latent (h, w): the VAE's 8x compression, rounded so the 2x2 packing fits."""
        return 2 * (height // (self.vae_scale_factor * 2)), 2 * (width // (self.vae_scale_factor * 2))


class StageRunner(Protocol):
    """The four stage calls `generate` makes; each takes and returns batch-first torch tensors."""

    async def encode_clip(self, prompts: list[str]) -> torch.Tensor: ...
    async def encode_t5(self, prompts: list[str], max_sequence_length: int) -> torch.Tensor: ...
    async def predict(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                      pooled_projections: torch.Tensor, timestep: torch.Tensor, latent_size: tuple[int, int],
                      guidance: torch.Tensor | None) -> torch.Tensor: ...
    async def decode(self, latents: torch.Tensor) -> torch.Tensor: ...


StepCallback = Callable[[int, int], Awaitable[None]]


def initial_noise(seeds: tuple[int, ...], geometry: Geometry, height: int, width: int, device, dtype) -> torch.Tensor:
    """Per-prompt noise [N, C, h, w]: prompt i's noise is what FluxPipeline draws for it alone with seed i."""
    from diffusers.utils.torch_utils import randn_tensor

    h, w = geometry.latent_grid(height, width)
    shape = (1, geometry.num_channels_latents, h, w)
    noises = [randn_tensor(shape, generator=torch.Generator("cpu").manual_seed(int(s)), device=torch.device(device),
                           dtype=dtype) for s in seeds]
    return torch.cat(noises)


def make_schedule(geometry: Geometry, num_inference_steps: int, image_seq_len: int, device):
    """A fresh FlowMatch Euler scheduler and its timesteps, with FLUX's sigmas and resolution shift (mu)."""
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

    scheduler = FlowMatchEulerDiscreteScheduler.from_config(geometry.scheduler_config)
    sigmas: np.ndarray | None = np.linspace(1.0, 1 / num_inference_steps, num_inference_steps)
    if getattr(scheduler.config, "use_flow_sigmas", False):
        sigmas = None
    cfg = scheduler.config
    mu = calculate_shift(image_seq_len, cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096),
                         cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15))
    # diffusers annotates sigmas as list[float], yet hands them to set_timesteps, which takes an array (FluxPipeline
    # itself passes an np.linspace)
    timesteps, _ = retrieve_timesteps(scheduler, num_inference_steps, device, sigmas=sigmas,  # type: ignore[arg-type]
                                      mu=mu)
    scheduler.set_begin_index(0)
    return scheduler, timesteps


class Timings(dict):
    """Wall milliseconds of a request's parts (encode, noise, predict[i], step[i], decode), when asked for."""

    def __init__(self):
        super().__init__()
        self._last = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.setdefault(name, []).append(round((now - self._last) * 1000, 3))
        self._last = now


async def generate(request: GenerationRequest, runner: StageRunner, geometry: Geometry, device, dtype,
                   on_step: StepCallback | None = None, timings: Timings | None = None) -> torch.Tensor:
    """Run the pipeline for one request; returns images [N, 3, H, W] float32 in [0, 1]."""
    from diffusers import FluxPipeline

    mark = timings.mark if timings is not None else (lambda name: None)
    prompts, n = list(request.prompts), len(request.prompts)
    # 3. Encode the prompts (CLIP pooled and T5 sequence, concurrently).
    pooled, embeds = await asyncio.gather(runner.encode_clip(prompts),
                                          runner.encode_t5(prompts, request.max_sequence_length))
    mark("encode")
    # 4. Latents: per-prompt noise, packed into 2x2 patches.
    noise = initial_noise(request.seeds, geometry, request.height, request.width, device, dtype)
    _, channels, h, w = noise.shape
    latents = FluxPipeline._pack_latents(noise, n, channels, h, w)
    # 5. Timesteps.
    scheduler, timesteps = make_schedule(geometry, request.num_inference_steps, latents.shape[1], device)
    guidance = None
    if geometry.guidance_embeds:
        guidance = torch.full([1], request.guidance_scale, device=device, dtype=torch.float32).expand(n)
    mark("noise")
    # 6. Denoising loop.
    for i, t in enumerate(timesteps):
        timestep = t.expand(n).to(latents.dtype)
        noise_pred = await runner.predict(latents, embeds, pooled, timestep, (h // 2, w // 2), guidance)
        mark("predict")
        latents = scheduler.step(noise_pred.to(latents.device), t, latents, return_dict=False)[0]
        mark("step")
        if on_step is not None:
            await on_step(i + 1, len(timesteps))
    # 7. Decode.
    latents = FluxPipeline._unpack_latents(latents, request.height, request.width, geometry.vae_scale_factor)
    images = await runner.decode(latents)
    mark("decode")
    return images


class InProcessRunner:
    """A `StageRunner` over stage objects in this process (no Triton)."""

    def __init__(self, clip, t5, dit, vae):
        self.clip, self.t5, self.dit, self.vae = clip, t5, dit, vae

    async def encode_clip(self, prompts):
        return self.clip.encode(prompts)

    async def encode_t5(self, prompts, max_sequence_length):
        return self.t5.encode(prompts, max_sequence_length)

    async def predict(self, hidden_states, encoder_hidden_states, pooled_projections, timestep, latent_size, guidance):
        return self.dit.predict(hidden_states, encoder_hidden_states, pooled_projections, timestep, latent_size,
                                guidance)

    async def decode(self, latents):
        return self.vae.decode(latents)
