"""The speed switches (flux_async/pipeline/speedups.py): their defaults per device, their ways off, their errors, and,
on the CPU, that each optimisation computes what the eager stage does (compile included, on Inductor's CPU backend)."""

import pytest
import torch

from flux_async import contract
from flux_async.pipeline.speedups import Speedups, compile_cache, quantize_fp8
from flux_async.pipeline.stages import DitStage, VaeStage
from flux_async.pipeline.weights import resolve_weights

CPU, GPU = torch.device("cpu"), torch.device("cuda", 0)
ENVS = (contract.ENV_COMPILE, contract.ENV_COMPILE_MODE, contract.ENV_CHANNELS_LAST, contract.ENV_FUSE_QKV,
        contract.ENV_PRECISION)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for name in ENVS:
        monkeypatch.delenv(name, raising=False)


def test_on_by_default_on_a_gpu_off_on_a_cpu_and_fp8_only_when_asked():
    assert Speedups.for_device(CPU) == Speedups()
    assert Speedups.for_device(GPU) == Speedups(compile=True, channels_last=True, fuse_qkv=True)
    assert Speedups.for_device(GPU).precision == "auto"


def test_each_switch_has_its_own_way_off_and_a_parameter_wins_over_the_environment(monkeypatch):
    monkeypatch.setenv(contract.ENV_COMPILE, "0")
    monkeypatch.setenv(contract.ENV_CHANNELS_LAST, "off")
    assert Speedups.for_device(GPU) == Speedups(compile=False, channels_last=False, fuse_qkv=True)
    monkeypatch.setenv(contract.ENV_FUSE_QKV, "no")
    monkeypatch.setenv(contract.ENV_PRECISION, "FP8")
    assert Speedups.for_device(GPU) == Speedups(precision="fp8")
    assert Speedups.for_device(CPU, {"compile": "1", "compile_mode": "max-autotune-no-cudagraphs"}) == Speedups(
        compile=True, compile_mode="max-autotune-no-cudagraphs")


@pytest.mark.parametrize(("name", "value", "allowed"), [
    ("compile", "maybe", "1/0, true/false, yes/no, on/off"),
    ("precision", "int4", "auto, fp8"),
    ("compile_mode", "reduce-overhead", "default, max-autotune-no-cudagraphs"),
])
def test_a_bad_setting_names_the_variable_the_parameter_and_the_allowed_values(name, value, allowed):
    with pytest.raises(ValueError) as error:
        Speedups.for_device(GPU, {name: value})
    message = str(error.value)
    assert f"FLUX_ASYNC_{name.upper()} (parameter {name!r})" in message and allowed in message
    assert repr(value) in message


def test_describe_gives_the_labels_a_server_publishes():
    assert Speedups(compile=True, precision="fp8").describe() == {
        "compile": "on", "compile_mode": "default", "channels_last": "off", "fuse_qkv": "off", "precision": "fp8"}


def test_fp8_refuses_a_cpu_with_the_reason():
    with pytest.raises(ValueError, match=r"fp8 needs an NVIDIA GPU of compute capability 8\.9 or newer.*a CPU"):
        quantize_fp8(torch.nn.Linear(16, 16))


def test_the_compile_cache_goes_where_asked_and_inductor_is_told(monkeypatch, tmp_path):
    monkeypatch.setenv(contract.ENV_COMPILE_CACHE, str(tmp_path / "inductor"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert compile_cache() == tmp_path / "inductor"
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")


def test_every_optimisation_computes_what_the_eager_stages_compute(monkeypatch, tmp_path):
    """Fused QKV, channels_last and torch.compile (Inductor's CPU backend, a fresh cache) against eager stages on the
    tiny weights: the same numbers within float32 rounding."""
    monkeypatch.setenv(contract.ENV_COMPILE_CACHE, str(tmp_path / "inductor"))
    source, fast = resolve_weights(), Speedups(compile=True, channels_last=True, fuse_qkv=True)
    eager_dit, fast_dit = DitStage(source, CPU, torch.float32, Speedups()), DitStage(source, CPU, torch.float32, fast)
    fused = fast_dit.transformer.transformer_blocks[0].attn
    assert fused.fused_projections and not hasattr(fused, "to_q") and not hasattr(fused, "add_k_proj")
    assert sum(p.numel() for p in fast_dit.transformer.parameters()) == sum(
        p.numel() for p in eager_dit.transformer.parameters())  # fused, without keeping the unfused copies
    config = eager_dit.transformer.config
    inputs = (torch.randn(2, 16, config.in_channels), torch.randn(2, 8, config.joint_attention_dim),
              torch.randn(2, config.pooled_projection_dim), torch.full((2,), 500.0))
    expected = eager_dit.predict(*inputs, (4, 4), None)
    torch.testing.assert_close(fast_dit.predict(*inputs, (4, 4), None), expected, rtol=1e-4, atol=1e-5)
    eager_vae, fast_vae = VaeStage(source, CPU, torch.float32, Speedups()), VaeStage(source, CPU, torch.float32, fast)
    latents = torch.randn(1, eager_vae.vae.config.latent_channels, 8, 8)
    image = fast_vae.decode(latents)
    assert image.is_contiguous()  # the contract's NCHW, whatever the VAE's memory format
    torch.testing.assert_close(image, eager_vae.decode(latents), rtol=1e-4, atol=1e-5)
    assert any((tmp_path / "inductor").iterdir())  # compiled artefacts landed in the cache asked for


def test_a_run_reads_what_the_models_run_from_the_metrics_and_prints_it():
    from flux_async.measure.triton_metrics import model_settings
    from flux_async.report.json_report import server_line

    text = ('# HELP flux_model_settings FLUX stage model settings\n# TYPE flux_model_settings gauge\n'
            'flux_model_settings{channels_last="on",compile="on",compile_mode="default",dtype="bfloat16",'
            'flux_model="dit_transformer",fuse_qkv="on",precision="fp8"} 1\n'
            'flux_model_settings{channels_last="off",compile="off",compile_mode="default",dtype="bfloat16",'
            'flux_model="vae_decoder",fuse_qkv="off",precision="auto"} 1\n'
            'nv_inference_count{model="bls",version="1"} 3\n')
    settings = model_settings(text)
    assert settings["dit_transformer"] == {"channels_last": "on", "compile": "on", "compile_mode": "default",
                                           "dtype": "bfloat16", "fuse_qkv": "on", "precision": "fp8"}
    assert server_line(settings) == ("dit_transformer bfloat16 fp8 (channels_last, compile, fuse_qkv); "
                                     "vae_decoder bfloat16")
    assert model_settings('nv_inference_count{model="bls",version="1"} 3\n') == {}


def _relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.float() - reference.float()).norm() / reference.float().norm())


@pytest.mark.gpu
def test_on_a_gpu_the_default_switches_compute_the_eager_transformer_within_bf16_rounding():
    source, device = resolve_weights(), GPU
    eager, fast = DitStage(source, device, torch.bfloat16, Speedups()), DitStage(source, device, torch.bfloat16)
    assert fast.speedups == Speedups(compile=True, channels_last=True, fuse_qkv=True)
    config = eager.transformer.config
    for batch in (1, 3):  # the second shape recompiles
        inputs = (torch.randn(batch, 64, config.in_channels, device=device), torch.randn(
            batch, 32, config.joint_attention_dim, device=device), torch.randn(
            batch, config.pooled_projection_dim, device=device), torch.full((batch,), 700.0, device=device))
        assert _relative_error(fast.predict(*inputs, (8, 8), None), eager.predict(*inputs, (8, 8), None)) < 2e-2
    assert fast.forward.failure is None  # the compiled forward was captured in CUDA graphs


@pytest.mark.gpu
def test_fp8_quantizes_the_transformer_blocks_and_stays_near_bf16():
    pytest.importorskip("torchao", reason="fp8 needs the fp8 extra (torchao)")
    source, device = resolve_weights(), GPU
    if torch.cuda.get_device_capability(device) < (8, 9):
        pytest.skip("fp8 needs compute capability 8.9 or newer")
    eager = DitStage(source, device, torch.bfloat16, Speedups())
    fp8 = DitStage(source, device, torch.bfloat16, Speedups(compile=True, fuse_qkv=True, precision="fp8"))
    linear = fp8.transformer.transformer_blocks[0].attn.to_qkv
    assert "Float8" in type(linear.weight).__name__  # torchao's float8 tensor subclass
    assert not type(fp8.transformer.x_embedder.weight).__name__.startswith("Float8")  # embedders stay bf16
    config = eager.transformer.config
    inputs = (torch.randn(2, 64, config.in_channels, device=device), torch.randn(
        2, 32, config.joint_attention_dim, device=device), torch.randn(
        2, config.pooled_projection_dim, device=device), torch.full((2,), 700.0, device=device))
    assert _relative_error(fp8.predict(*inputs, (8, 8), None), eager.predict(*inputs, (8, 8), None)) < 0.1


def test_warm_up_sizes_are_parsed_or_refused_with_the_form():
    from flux_async.pipeline.speedups import parse_sizes

    assert parse_sizes(None) == parse_sizes("off") == parse_sizes(" 0 ") == []
    assert parse_sizes("1024x1024, 512x768") == [(1024, 1024), (512, 768)]
    for bad in ("1024", "1000x1024", "1024x1024,", "big"):
        with pytest.raises(ValueError, match=r"FLUX_ASYNC_WARMUP \(parameter 'warmup'\) must be 'off' or sizes "):
            parse_sizes(bad)


def test_warm_up_runs_each_size_at_batch_1_and_2_with_the_shapes_a_request_would_bring(monkeypatch):
    """The shapes bls would send for a 64x96 image (the tiny VAE's scale), at batch 1 then 2; then for real."""
    from flux_async.pipeline.generate import Geometry
    from flux_async.serving.warmup import warm_transformer, warm_vae

    source = resolve_weights()
    dit, vae = DitStage(source, CPU, torch.float32, Speedups()), VaeStage(source, CPU, torch.float32, Speedups())
    h, w = Geometry.from_source(source).latent_grid(64, 96)
    seen = []
    monkeypatch.setattr(dit, "predict", lambda hidden, text, *rest: seen.append((hidden.shape, text.shape, rest[2])))
    monkeypatch.setattr(vae, "decode", lambda latents: seen.append(latents.shape))
    warm_transformer(dit, source, [(64, 96)])
    warm_vae(vae, source, [(64, 96)])
    tokens, channels, text = (h // 2) * (w // 2), dit.transformer.config.in_channels, (
        256, dit.transformer.config.joint_attention_dim)
    assert seen == [(torch.Size([1, tokens, channels]), torch.Size([1, *text]), (h // 2, w // 2)),
                    (torch.Size([2, tokens, channels]), torch.Size([2, *text]), (h // 2, w // 2)),
                    torch.Size([1, vae.vae.config.latent_channels, h, w]),
                    torch.Size([2, vae.vae.config.latent_channels, h, w])]
    monkeypatch.undo()
    assert warm_transformer(dit, source, [(64, 96)]) >= 0 and warm_vae(vae, source, [(64, 96)]) >= 0
