"""T003: each triton_models/*/1/model.py run directly, with a stand-in for triton_python_backend_utils.

Run alone: `uv run tests/unit/test_individual_models.py`.
"""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
import torch

from flux_async import contract
from flux_async.testing import python_backend

ROOT = python_backend.Path(__file__).resolve().parents[2]
PROMPT = "A cat holding a sign"


@pytest.fixture(scope="module")
def pb_utils(tiny_weights, monkeypatch_module):
    monkeypatch_module.setenv(contract.ENV_WEIGHTS, str(tiny_weights))
    monkeypatch_module.delenv(contract.ENV_DTYPE, raising=False)
    return python_backend.install()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def load_models(args: dict) -> dict:
    """Every model of the repository, initialized with `args`, and served to each other in-process."""
    loaded = {}
    for name in contract.ALL_MODELS:
        model = python_backend.load_model_py(ROOT / "triton_models" / name / "1" / "model.py", name).TritonPythonModel()
        model.initialize(args)
        loaded[name] = model
        python_backend.serve_in_process(name, model)
    return loaded


@pytest.fixture(scope="module")
def models(pb_utils):
    """As Triton would start them with no arguments: CPU, weights from the environment."""
    yield load_models({})
    for name in contract.ALL_MODELS:
        python_backend.unserve_in_process(name)


@pytest.fixture(scope="module")
def pipe(reference_images):
    return reference_images.pipe


def request(pb_utils, **arrays):
    return pb_utils.InferenceRequest(inputs=[pb_utils.Tensor(name, value) for name, value in arrays.items()])


def texts(*prompts):
    return np.array([[p.encode()] for p in prompts], dtype=np.object_)


def output(response, name):
    assert not response.has_error(), response.error().message()
    tensor = next(t for t in response.output_tensors() if t.name() == name)
    return torch.from_dlpack(tensor.to_dlpack())


def test_clip_encoder_direct(pb_utils, models, pipe):
    [response] = models["clip_encoder"].execute([request(pb_utils, text=texts(PROMPT))])
    pooled = output(response, "pooled_prompt_embeds")
    hidden = pipe.text_encoder.config.hidden_size  # 768 for real CLIP-L
    assert pooled.shape == (1, hidden)
    torch.testing.assert_close(pooled, pipe._get_clip_prompt_embeds(PROMPT, device="cpu"), rtol=0, atol=1e-6)


def test_t5_encoder_direct(pb_utils, models, pipe):
    lengths = np.array([[64], [64]], dtype=np.int32)
    [response] = models["t5_encoder"].execute([request(pb_utils, text=texts(PROMPT, "a dog"),
                                                       max_sequence_length=lengths)])
    embeds = output(response, "prompt_embeds")
    assert embeds.shape == (2, 64, pipe.text_encoder_2.config.d_model)
    expected = pipe._get_t5_prompt_embeds([PROMPT, "a dog"], max_sequence_length=64, device="cpu")
    torch.testing.assert_close(embeds, expected, rtol=0, atol=1e-5)


def dit_inputs(pipe, n=1, grid=(8, 8), length=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    channels = pipe.transformer.config.in_channels
    return dict(
        hidden_states=torch.randn(n, grid[0] * grid[1], channels, generator=g).numpy(),
        encoder_hidden_states=torch.randn(n, length, pipe.transformer.config.joint_attention_dim, generator=g).numpy(),
        pooled_projections=torch.randn(n, pipe.transformer.config.pooled_projection_dim, generator=g).numpy(),
        timestep=np.full((n, 1), 750.0, dtype=np.float32),
        latent_size=np.tile(np.array(grid, dtype=np.int32), (n, 1)),
    )


def test_dit_transformer_direct(pb_utils, models, pipe):
    inputs = dit_inputs(pipe, n=2)
    [response] = models["dit_transformer"].execute([request(pb_utils, **inputs)])
    noise = output(response, "noise_pred")
    assert noise.shape == inputs["hidden_states"].shape  # a prediction of the latents' shape
    img_ids = pipe._prepare_latent_image_ids(2, 8, 8, "cpu", torch.float32)
    with torch.inference_mode():
        expected = pipe.transformer(hidden_states=torch.from_numpy(inputs["hidden_states"]),
                                    timestep=torch.full((2,), 0.75), guidance=None,
                                    pooled_projections=torch.from_numpy(inputs["pooled_projections"]),
                                    encoder_hidden_states=torch.from_numpy(inputs["encoder_hidden_states"]),
                                    txt_ids=torch.zeros(32, 3), img_ids=img_ids, return_dict=False)[0]
    torch.testing.assert_close(noise, expected, rtol=0, atol=1e-5)


def test_dit_groups_requests_of_different_sizes(pb_utils, models, pipe):
    """Requests batched together by Triton may differ in latent grid: each is answered as if run alone."""
    model = models["dit_transformer"]
    a, b = dit_inputs(pipe, 1, (8, 8), seed=1), dit_inputs(pipe, 2, (4, 6), seed=2)
    c = dit_inputs(pipe, 1, (8, 8), seed=3)
    together = model.execute([request(pb_utils, **x) for x in (a, b, c)])
    for inputs, response in zip((a, b, c), together):
        [alone] = model.execute([request(pb_utils, **inputs)])
        assert output(response, "noise_pred").shape == inputs["hidden_states"].shape
        torch.testing.assert_close(output(response, "noise_pred"), output(alone, "noise_pred"), rtol=0, atol=1e-5)


def test_traced_stage_logs_each_batch_and_answers_the_same(pb_utils, models, pipe, monkeypatch, capsys):
    """FLUX_ASYNC_TRACE=1: one FLUX_STAGE_TRACE line per executed batch (wall time; device time on a GPU)."""
    model = models["dit_transformer"]
    inputs = [dit_inputs(pipe, 2, seed=4), dit_inputs(pipe, 1, seed=5)]
    plain = model.execute([request(pb_utils, **x) for x in inputs])
    monkeypatch.setattr(model, "trace", True)
    capsys.readouterr()
    traced = model.execute([request(pb_utils, **x) for x in inputs])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("FLUX_STAGE_TRACE ")]
    assert len(lines) == 1  # both requests share the grid: one batch of three items
    trace = json.loads(lines[0].split(" ", 1)[1])
    assert trace["model"] == "dit_transformer" and trace["items"] == 3 and trace["wall_ms"] > 0
    assert "device_ms" not in trace  # CPU: no CUDA events
    for a, b in zip(plain, traced):
        assert torch.equal(output(a, "noise_pred"), output(b, "noise_pred"))


def test_vae_decoder_direct(pb_utils, models):
    latents = torch.randn(2, 16, 16, 12, generator=torch.Generator().manual_seed(0)).numpy()
    [response] = models["vae_decoder"].execute([request(pb_utils, latents=latents)])
    images = output(response, "images")
    assert images.shape == (2, 3, 128, 96) and images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_stage_model_rejects_one_request_and_serves_the_rest(pb_utils, models):
    good, bad = request(pb_utils, text=texts(PROMPT)), request(pb_utils, text=texts("   "))
    responses = models["clip_encoder"].execute([good, bad])
    assert output(responses[0], "pooled_prompt_embeds").shape[0] == 1
    assert responses[1].has_error()
    assert responses[1].error().code() == pb_utils.TritonError.INVALID_ARG
    assert "text[0] must be non-empty" in responses[1].error().message()


def bls_request(pb_utils, prompts, seeds, height=128, width=128, steps=4, guidance=0.0, max_sequence_length=256):
    return request(pb_utils, prompt=np.array([p.encode() for p in prompts], dtype=np.object_),
                   seed=np.array(seeds, dtype=np.int64), height=np.array([height], dtype=np.int32),
                   width=np.array([width], dtype=np.int32), num_inference_steps=np.array([steps], dtype=np.int32),
                   guidance_scale=np.array([guidance], dtype=np.float32),
                   max_sequence_length=np.array([max_sequence_length], dtype=np.int32))


def test_bls_end_to_end_matches_flux_pipeline(pb_utils, models, reference_images):
    prompts, seeds = ["A cat holding a sign that says hello world", "A futuristic city"], [42, 7]
    [response] = asyncio.run(models["bls"].execute([bls_request(pb_utils, prompts, seeds, width=192)]))
    images = output(response, "images").numpy()
    assert images.shape == (2, 3, 128, 192)
    assert output(response, "seeds").tolist() == seeds
    for image, prompt, seed in zip(images, prompts, seeds):
        expected = reference_images(prompt, seed, width=192)
        assert np.abs(image - expected).max() <= 1e-4


def test_bls_stream_sends_steps_then_final_images(pb_utils, models, reference_images):
    req = bls_request(pb_utils, [PROMPT], [3], steps=3)
    assert asyncio.run(models["bls_stream"].execute([req])) is None
    sent = req.get_response_sender().sent
    assert [int(output(r, "step")[0]) for r, _ in sent] == [1, 2, 3, 3]
    assert [flags for _, flags in sent] == [0, 0, 0, pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL]
    final = sent[-1][0]
    assert int(output(final, "total_steps")[0]) == 3
    np.testing.assert_allclose(output(final, "images").numpy()[0], reference_images(PROMPT, 3, steps=3), atol=1e-4)


@pytest.mark.parametrize("change, field", [
    (dict(prompts=[""]), "prompt"), (dict(height=1000), "height"), (dict(steps=0), "num_inference_steps"),
    (dict(guidance=float("nan")), "guidance_scale"), (dict(seeds=[1, 2]), "seed"),
])
def test_bls_rejects_bad_input_naming_the_field(pb_utils, models, change, field):
    args = dict(prompts=[PROMPT], seeds=[1]) | change
    [response] = asyncio.run(models["bls"].execute([bls_request(pb_utils, **args)]))
    assert response.has_error() and response.error().code() == pb_utils.TritonError.INVALID_ARG
    assert field in response.error().message()


def test_bls_names_an_unavailable_stage(pb_utils, models):
    python_backend.unserve_in_process("vae_decoder")
    try:
        [response] = asyncio.run(models["bls"].execute([bls_request(pb_utils, [PROMPT], [1])]))
    finally:
        python_backend.serve_in_process("vae_decoder", models["vae_decoder"])
    assert response.has_error() and response.error().code() == pb_utils.TritonError.UNAVAILABLE
    assert "vae_decoder" in response.error().message()


def test_bls_dev_variant_uses_guidance_and_matches_flux_pipeline(pb_utils, models, tiny_dev_weights,
                                                                   reference_factory):
    """Guidance-embedded weights (given as the `weights` config parameter): guidance reaches the transformer and the
    resolution shift moves the schedule, as in FluxPipeline; two guidance values give two different images."""
    params = {"parameters": {"weights": {"string_value": str(tiny_dev_weights)}}}
    dev = load_models({"model_config": json.dumps(params)})
    reference = reference_factory(tiny_dev_weights)
    try:
        images = {}
        for guidance in (1.5, 3.5):
            req = bls_request(pb_utils, [PROMPT], [9], height=128, width=160, guidance=guidance,
                              max_sequence_length=512)
            [response] = asyncio.run(dev["bls"].execute([req]))
            images[guidance] = output(response, "images").numpy()[0]
            expected = reference(PROMPT, 9, guidance=guidance, width=160, max_sequence_length=512)
            assert np.abs(images[guidance] - expected).max() <= 1e-4
        assert np.abs(images[1.5] - images[3.5]).max() > 1e-3
    finally:
        for name, model in models.items():
            python_backend.serve_in_process(name, model)


def test_out_of_memory_fails_the_batch_and_the_model_keeps_serving(pb_utils, models, pipe, monkeypatch):
    model, calls = models["dit_transformer"], []
    original = model.stage.predict

    def predict_once_out_of_memory(*args):
        calls.append(1)
        if len(calls) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB")
        return original(*args)

    monkeypatch.setattr(model.stage, "predict", predict_once_out_of_memory)
    [failed] = model.execute([request(pb_utils, **dit_inputs(pipe))])
    assert failed.has_error() and failed.error().code() == pb_utils.TritonError.UNAVAILABLE
    assert "dit_transformer ran out of GPU memory for a batch of 1 item(s)" in failed.error().message()
    [served] = model.execute([request(pb_utils, **dit_inputs(pipe))])
    assert not served.has_error()


def test_bls_rejects_a_request_over_the_memory_budget(pb_utils, models, monkeypatch):
    monkeypatch.setattr(models["bls"], "max_pixels", 2 * 128 * 128)
    [response] = asyncio.run(models["bls"].execute([bls_request(pb_utils, ["a", "b", "c"], [1, 2, 3])]))
    assert response.has_error() and response.error().code() == pb_utils.TritonError.INVALID_ARG
    assert ("3 prompts x 128x128 = 49,152 pixels exceeds this server's memory budget of 32,768 pixels"
            in response.error().message())
    [ok] = asyncio.run(models["bls"].execute([bls_request(pb_utils, ["a", "b"], [1, 2])]))
    assert not ok.has_error()


@pytest.mark.parametrize("name", contract.ALL_MODELS)
def test_config_pbtxt_agrees_with_contract(pb_utils, name):
    """auto_complete_config accepts each config.pbtxt (drift between it and contract.py fails the load)."""
    from google.protobuf import json_format, text_format
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse((ROOT / "triton_models" / name / "config.pbtxt").read_text(),
                               model_config_pb2.ModelConfig())
    as_json = json_format.MessageToDict(config, preserving_proto_field_name=True,
                                        always_print_fields_with_no_presence=True)
    for tensor in as_json["input"] + as_json["output"]:
        tensor["dims"] = [int(d) for d in tensor["dims"]]
    completed = python_backend.load_model_py(ROOT / "triton_models" / name / "1" / "model.py", name) \
        .TritonPythonModel.auto_complete_config(pb_utils.ModelConfig(json.dumps(as_json))).as_dict()
    inputs, outputs = contract.MODEL_TENSORS[name]
    assert [t["name"] for t in completed["input"]] == [s.name for s in inputs]
    assert [t["name"] for t in completed["output"]] == [s.name for s in outputs]
    assert all(t["data_type"] != "TYPE_INVALID" for t in completed["input"] + completed["output"])
    if name in contract.STAGE_MODELS:
        assert config.max_batch_size >= contract.STAGE_MAX_BATCH_SIZE and config.HasField("dynamic_batching")
    else:
        assert config.max_batch_size == 0
        assert config.model_transaction_policy.decoupled == (name == contract.BLS_STREAM)


if __name__ == "__main__":
    import sys

    sys.exit(pytest.main([__file__, *sys.argv[1:]]))


def test_a_gpu_instance_makes_its_own_device_current(pb_utils, monkeypatch):
    """Triton may put an instance on any GPU it sees (KIND_AUTO on a multi-GPU host): it works there by default."""
    from flux_async.serving import runtime

    made_current = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", made_current.append)
    _, device, _, _ = runtime.setup({"model_instance_kind": "GPU", "model_instance_device_id": "2",
                                     "model_config": json.dumps({"parameters": {}})})
    assert device == torch.device("cuda", 2) and made_current == [device]
    made_current.clear()
    runtime.setup({"model_instance_kind": "CPU", "model_config": json.dumps({"parameters": {}})})
    assert made_current == []


def test_a_cuda_output_is_exported_with_its_own_device_current(pb_utils, monkeypatch):
    """torch exports a CUDA tensor through DLPack only while its device is the calling thread's current device, and
    bls runs requests on threads of its own (seen on 4 H200s: "Can't export tensors on a different CUDA device
    index. Expected: 3. Current device: 0."). The export must happen inside the tensor's device context."""
    import contextlib

    from flux_async.serving import runtime

    current, exported = [0], []

    @contextlib.contextmanager
    def device(which):
        previous, current[0] = current[0], which.index
        yield
        current[0] = previous

    class CudaTensor:
        is_cuda, device = True, torch.device("cuda", 3)

        def contiguous(self):
            return self

    monkeypatch.setattr(torch.cuda, "device", device)
    monkeypatch.setattr(pb_utils.Tensor, "from_dlpack", classmethod(lambda cls, name, value: exported.append(
        (name, current[0]))))
    runtime.output_tensor("images", CudaTensor())
    assert exported == [("images", 3)] and current == [0]


def test_the_transformer_and_the_vae_say_what_they_run_on_the_metrics_endpoint(models, pb_utils):
    """Each publishes a `flux_model_settings` gauge whose labels are its dtype, precision and speed switches (off on
    a CPU), which `run` reads into its report's `server` section."""
    published = {dict(labels)["flux_model"]: dict(labels)
                 for (family, labels), value in pb_utils.MetricFamily.values.items()
                 if family == "flux_model_settings" and value == 1.0}
    assert set(published) >= {"dit_transformer", "vae_decoder"}
    assert published["dit_transformer"] == {"flux_model": "dit_transformer", "dtype": "float32", "compile": "off",
                                            "compile_mode": "default", "channels_last": "off", "fuse_qkv": "off",
                                            "precision": "auto"}
