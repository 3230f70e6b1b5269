"""The weights builder (`make-tiny-flux`), the tokenizers, and the FLUX.1-sized presets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from flux_async.pipeline.tokenizers import build_clip_tokenizer

ROOT = Path(__file__).resolve().parents[2]


def test_clip_tokenizer_is_the_real_clip_vocabulary():
    assert build_clip_tokenizer()("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_make_tiny_flux_is_byte_identical_for_a_seed_and_loads_in_flux_pipeline(tmp_path, tiny_weights):
    result = subprocess.run([sys.executable, "-m", "flux_async", "make-tiny-flux", str(tmp_path / "again")],
                            capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    ours = {p.relative_to(tiny_weights): p.read_bytes() for p in tiny_weights.rglob("*") if p.is_file()}
    again = {p.relative_to(tmp_path / "again"): p.read_bytes() for p in (tmp_path / "again").rglob("*") if p.is_file()}
    assert ours.keys() == again.keys() and all(ours[k] == again[k] for k in ours)
    expected = {"model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json",
                "text_encoder_2/config.json", "tokenizer/tokenizer_config.json", "tokenizer_2/tokenizer_config.json",
                "transformer/config.json", "vae/config.json"}
    assert expected <= {str(k) for k in ours}
    assert all(oct(p.stat().st_mode)[-3:] == "644" for p in tiny_weights.rglob("*") if p.is_file())


def test_tiny_weights_have_flux_geometry(reference_images):
    pipe = reference_images.pipe
    assert pipe.vae_scale_factor == 8 and pipe.vae.config.latent_channels == 16
    assert pipe.transformer.config.in_channels == 64
    assert pipe.tokenizer.model_max_length == 77 and pipe.tokenizer_2.model_max_length == 512


def test_another_seed_gives_other_weights(tmp_path, tiny_weights):
    from flux_async.pipeline.tiny import make_tiny_flux

    other = make_tiny_flux(tmp_path / "seed1", seed=1)
    name = "transformer/diffusion_pytorch_model.safetensors"
    assert (other / name).read_bytes() != (tiny_weights / name).read_bytes()


@pytest.mark.parametrize("variant, guidance", [("schnell", False), ("dev", True)])
def test_flux1_sized_presets_have_the_real_parameter_counts(variant, guidance):
    """Built on the meta device (no memory): the FLUX.1 architectures at their published sizes."""
    import torch

    from flux_async.pipeline.tiny import build_module

    counts = {name: sum(p.numel() for p in build_module(name, "full", variant, device="meta",
                                                        dtype=torch.bfloat16).parameters())
              for name in ("text_encoder", "text_encoder_2", "transformer", "vae")}
    assert 123e6 < counts["text_encoder"] < 124e6  # CLIP ViT-L/14 text tower
    assert 4.7e9 < counts["text_encoder_2"] < 4.8e9  # T5-v1.1-XXL encoder
    assert 11.8e9 < counts["transformer"] < 12.0e9  # FLUX.1 transformer
    assert 83e6 < counts["vae"] < 84e6
    transformer = build_module("transformer", "full", variant, device="meta", dtype=torch.bfloat16)
    assert transformer.config.guidance_embeds is guidance


def test_weights_spec_errors_are_clear(tmp_path):
    from flux_async.pipeline.weights import resolve_weights

    with pytest.raises(FileNotFoundError, match="model_index.json"):
        resolve_weights(tmp_path)
    with pytest.raises(ValueError, match="unknown weights preset 'flux3'"):
        resolve_weights("preset:flux3")
