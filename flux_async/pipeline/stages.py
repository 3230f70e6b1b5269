"""The four FLUX stages as batch functions on torch tensors, each doing exactly what `FluxPipeline` does for it."""

from __future__ import annotations

import torch

from flux_async.pipeline.cuda_graphs import GraphCache
from flux_async.pipeline.speedups import Speedups, channels_last, prepare_transformer, prepare_vae
from flux_async.pipeline.weights import WeightsSource, load_module, load_tokenizer


class ClipStage:
    """CLIP text encoder: prompts → pooled embeddings [N, hidden] (FluxPipeline._get_clip_prompt_embeds)."""

    def __init__(self, source: WeightsSource, device, dtype):
        self.device, self.dtype = torch.device(device), dtype
        self.tokenizer = load_tokenizer(source, "tokenizer")
        self.text_encoder = load_module(source, "text_encoder", self.device, dtype)
        self.max_length = self.tokenizer.model_max_length
        self.forward = GraphCache(lambda ids: self.text_encoder(ids, output_hidden_states=False).pooler_output,
                                  self.device)

    @torch.inference_mode()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                             return_overflowing_tokens=False, return_length=False, return_tensors="pt").input_ids
        return self.forward(ids.to(self.device)).to(dtype=self.text_encoder.dtype)


class T5Stage:
    """T5 encoder: prompts → embeddings [N, L, d], padded to L without a mask (FluxPipeline._get_t5_prompt_embeds)."""

    def __init__(self, source: WeightsSource, device, dtype):
        self.device, self.dtype = torch.device(device), dtype
        self.tokenizer = load_tokenizer(source, "tokenizer_2")
        self.text_encoder = load_module(source, "text_encoder_2", self.device, dtype)
        self.forward = GraphCache(lambda ids: self.text_encoder(ids, output_hidden_states=False)[0], self.device)

    @torch.inference_mode()
    def encode(self, prompts: list[str], max_sequence_length: int) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding="max_length", max_length=max_sequence_length, truncation=True,
                             return_length=False, return_overflowing_tokens=False, return_tensors="pt").input_ids
        return self.forward(ids.to(self.device)).to(dtype=self.text_encoder.dtype)


class DitStage:
    """FLUX transformer: one denoising prediction for a batch that shares the latent grid and text length.
    `speedups` (default: this device's, from the environment) may fuse, quantize and compile it."""

    def __init__(self, source: WeightsSource, device, dtype, speedups: Speedups | None = None):
        self.device, self.dtype = torch.device(device), dtype
        self.speedups = Speedups.for_device(self.device) if speedups is None else speedups
        self.transformer = load_module(source, "transformer", self.device, dtype)
        prepare_transformer(self.transformer, self.speedups)
        self.guidance_embeds = bool(self.transformer.config.guidance_embeds)
        self.forward = GraphCache(self._transformer, self.device)

    def _transformer(self, hidden_states, timestep, pooled_projections, encoder_hidden_states, txt_ids, img_ids,
                     guidance=None):
        return self.transformer(
            hidden_states=hidden_states, timestep=timestep, guidance=guidance, pooled_projections=pooled_projections,
            encoder_hidden_states=encoder_hidden_states, txt_ids=txt_ids, img_ids=img_ids, joint_attention_kwargs={},
            return_dict=False)[0]

    @torch.inference_mode()
    def predict(self, hidden_states: torch.Tensor, encoder_hidden_states: torch.Tensor,
                pooled_projections: torch.Tensor, timestep: torch.Tensor, latent_size: tuple[int, int],
                guidance: torch.Tensor | None) -> torch.Tensor:
        from diffusers import FluxPipeline

        dev, dt = self.device, self.dtype
        img_ids = FluxPipeline._prepare_latent_image_ids(None, latent_size[0], latent_size[1], dev, dt)
        txt_ids = torch.zeros(encoder_hidden_states.shape[1], 3).to(device=dev, dtype=dt)
        inputs = [hidden_states.to(dev, dt), timestep.to(dev, dt) / 1000, pooled_projections.to(dev, dt),
                  encoder_hidden_states.to(dev, dt), txt_ids, img_ids]
        if self.guidance_embeds:
            if guidance is None:
                raise ValueError("this transformer has a guidance embedding: the 'guidance' input is required")
            inputs.append(guidance.to(device=dev, dtype=torch.float32))
        return self.forward(*inputs)


class VaeStage:
    """VAE decoder: unpacked latents [N, C, h, w] → RGB images [N, 3, H, W] in [0, 1], float32; `speedups` as
    DitStage's (channels_last, compiled decoder)."""

    def __init__(self, source: WeightsSource, device, dtype, speedups: Speedups | None = None):
        from diffusers.image_processor import VaeImageProcessor

        self.device, self.dtype = torch.device(device), dtype
        self.speedups = Speedups.for_device(self.device) if speedups is None else speedups
        self.vae = load_module(source, "vae", self.device, dtype)
        prepare_vae(self.vae, self.speedups)
        scale = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.image_processor = VaeImageProcessor(vae_scale_factor=scale * 2)

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        cfg = self.vae.config
        latents = (latents.to(self.device, self.dtype) / cfg.scaling_factor) + cfg.shift_factor
        image = self.vae.decode(channels_last(latents, self.speedups), return_dict=False)[0]
        return self.image_processor.postprocess(image, output_type="pt").float().contiguous()
