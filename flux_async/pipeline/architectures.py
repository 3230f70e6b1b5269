"""Model configurations: tiny (CPU tests) and FLUX.1-schnell/-dev-sized (GPU capacity work), as plain dicts."""

from __future__ import annotations

import copy

VARIANTS = ("schnell", "dev")
SIZES = ("tiny", "full")

# FLUX.1's scheduler configs, as published with the real snapshots.
SCHEDULERS = {
    "schnell": {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
                "num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False},
    "dev": {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
            "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True},
}

_CLIP = {
    "tiny": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, projection_dim=32),
    "full": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 projection_dim=768),
}
_T5 = {
    "tiny": dict(d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=2, relative_attention_num_buckets=8),
    "full": dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, relative_attention_num_buckets=32),
}
_TRANSFORMER = {
    "tiny": dict(num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
                 axes_dims_rope=(4, 6, 6)),
    "full": dict(num_layers=19, num_single_layers=38, attention_head_dim=128, num_attention_heads=24,
                 axes_dims_rope=(16, 56, 56)),
}
# Real FLUX geometry at every size: 8x VAE (four blocks), 16 latent channels, transformer in_channels 64.
_VAE = {
    "tiny": dict(block_out_channels=(16, 16, 32, 32), layers_per_block=1, norm_num_groups=8),
    "full": dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32),
}


def component_configs(size: str = "tiny", variant: str = "schnell", t5_vocab_size: int = 32128,
                      clip_vocab_size: int = 49408) -> dict[str, dict]:
    """Return the constructor kwargs of every FLUX component for a size and variant."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    clip = dict(_CLIP[size], vocab_size=clip_vocab_size, max_position_embeddings=77, hidden_act="quick_gelu",
                bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    t5 = dict(_T5[size], vocab_size=t5_vocab_size, feed_forward_proj="gated-gelu", is_encoder_decoder=False,
              use_cache=False, dense_act_fn="gelu_new", is_gated_act=True)
    transformer = dict(_TRANSFORMER[size], patch_size=1, in_channels=64, joint_attention_dim=t5["d_model"],
                       pooled_projection_dim=clip["hidden_size"], guidance_embeds=variant == "dev")
    vae = dict(_VAE[size], in_channels=3, out_channels=3, latent_channels=16,
               down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
               sample_size=1024, scaling_factor=0.3611, shift_factor=0.1159, use_quant_conv=False,
               use_post_quant_conv=False, mid_block_add_attention=True, force_upcast=True)
    return copy.deepcopy({"text_encoder": clip, "text_encoder_2": t5, "transformer": transformer, "vae": vae,
                          "scheduler": SCHEDULERS[variant]})
