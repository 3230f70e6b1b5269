"""The bad-input matrix: bad requests to `bls` (docs/bls.md) and to each stage model, over HTTP and gRPC. Each is
rejected with INVALID_ARG naming the input; the server keeps serving, no stub process restarts, and a good request
succeeds right after.

Run alone: `uv run tests/integration/test_bad_inputs.py`.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from flux_async.targets.bls_inputs import make_input

GOOD = {"prompt": np.array([b"a red bicycle"], dtype=np.object_), "height": np.array([64], dtype=np.int32),
        "width": np.array([64], dtype=np.int32), "num_inference_steps": np.array([1], dtype=np.int32),
        "seed": np.array([1], dtype=np.int64)}


def f32s(*shape, fill=0.5):
    return np.full(shape, fill, dtype=np.float32)


def texts(*values):
    return np.array([[v] for v in values], dtype=np.object_)


# Good requests to the stage models (tiny weights: CLIP and T5 width 32, 16 latent channels, in_channels 64).
STAGE_GOOD = {
    "clip_encoder": {"text": texts(b"a cat")},
    "t5_encoder": {"text": texts(b"a cat"), "max_sequence_length": np.array([[64]], dtype=np.int32)},
    "dit_transformer": {"hidden_states": f32s(1, 16, 64), "encoder_hidden_states": f32s(1, 8, 32),
                        "pooled_projections": f32s(1, 32), "timestep": f32s(1, 1, fill=500.0),
                        "latent_size": np.array([[4, 4]], dtype=np.int32)},
    "vae_decoder": {"latents": f32s(1, 16, 8, 8)},
}
# (case id, model, changes to its good request (None removes an input), field the message names, text it contains)
STAGE_CASES = [
    ("clip empty text", "clip_encoder", {"text": texts(b"")}, "text", "non-empty"),
    ("clip whitespace text", "clip_encoder", {"text": texts(b" \t ")}, "text", "non-empty"),
    ("clip non-UTF-8 text", "clip_encoder", {"text": texts(b"\xc3\x28")}, "text", "UTF-8"),
    ("clip missing text", "clip_encoder", {"text": None}, "text", ""),
    ("clip batch over 8", "clip_encoder", {"text": texts(*[b"a"] * 9)}, "clip_encoder", "batch-size must be <= 8"),
    ("t5 sequence length zero", "t5_encoder", {"max_sequence_length": np.array([[0]], dtype=np.int32)},
     "max_sequence_length", "[1, 512]"),
    ("t5 mixed sequence lengths", "t5_encoder", {"text": texts(b"a", b"b"),
                                                 "max_sequence_length": np.array([[64], [32]], dtype=np.int32)},
     "max_sequence_length", "the same for every item"),
    ("t5 wrong dtype", "t5_encoder", {"max_sequence_length": np.array([[64.0]], dtype=np.float32)},
     "max_sequence_length", ""),
    ("dit grid not matching the tokens", "dit_transformer", {"latent_size": np.array([[4, 5]], dtype=np.int32)},
     "latent_size", "does not match hidden_states"),
    ("dit wrong channel count", "dit_transformer", {"hidden_states": f32s(1, 16, 63)}, "hidden_states",
     "must have 64 channels"),
    ("dit wrong text width", "dit_transformer", {"encoder_hidden_states": f32s(1, 8, 31)}, "encoder_hidden_states",
     "must have 32 channels"),
    ("dit missing timestep", "dit_transformer", {"timestep": None}, "timestep", ""),
    ("dit wrong rank", "dit_transformer", {"pooled_projections": f32s(1, 32, 1)}, "pooled_projections", ""),
    ("dit wrong dtype", "dit_transformer", {"hidden_states": np.zeros((1, 16, 64), dtype=np.int32)},
     "hidden_states", ""),
    ("dit mixed grids in a request", "dit_transformer", {
        "hidden_states": f32s(2, 16, 64), "encoder_hidden_states": f32s(2, 8, 32), "pooled_projections": f32s(2, 32),
        "timestep": f32s(2, 1), "latent_size": np.array([[4, 4], [2, 8]], dtype=np.int32)},
     "latent_size", "the same for every item"),
    ("vae wrong channels", "vae_decoder", {"latents": f32s(1, 15, 8, 8)}, "latents", "must have 16 channels"),
    ("vae wrong rank", "vae_decoder", {"latents": f32s(1, 16, 8)}, "latents", ""),
    ("vae wrong dtype", "vae_decoder", {"latents": np.zeros((1, 16, 8, 8), dtype=np.float16)}, "latents", ""),
    ("vae unknown input", "vae_decoder", {"noise": f32s(1, 1)}, "noise", ""),
]


def i32(*values):
    return np.array(values, dtype=np.int32)


def f32(*values):
    return np.array(values, dtype=np.float32)


def prompts(*values):
    return np.array(values, dtype=np.object_)


# (case id, changes to GOOD (None removes an input), field the message must name, text it must contain)
CASES = [
    ("empty prompt", {"prompt": prompts(b"")}, "prompt", "non-empty"),
    ("whitespace prompt", {"prompt": prompts(b"  \t\n ")}, "prompt", "non-empty"),
    ("non-UTF-8 prompt", {"prompt": prompts(b"\xff\xfe cat")}, "prompt", "UTF-8"),
    ("over-long prompt", {"prompt": prompts(("cat " * 300).encode())}, "prompt", "max_sequence_length"),
    ("zero prompts", {"prompt": np.array([], dtype=np.object_), "seed": None}, "prompt", "1 to 8"),
    ("nine prompts", {"prompt": prompts(*[b"cat"] * 9), "seed": None}, "prompt", "1 to 8"),
    ("missing prompt", {"prompt": None}, "prompt", ""),
    ("zero steps", {"num_inference_steps": i32(0)}, "num_inference_steps", "[1, 100]"),
    ("too many steps", {"num_inference_steps": i32(101)}, "num_inference_steps", "[1, 100]"),
    ("height not a multiple of 16", {"height": i32(1000)}, "height", "multiple of 16 in [64, 2048], got 1000"),
    ("width too small", {"width": i32(32)}, "width", "[64, 2048]"),
    ("height too large", {"height": i32(4096)}, "height", "[64, 2048]"),
    ("NaN guidance", {"guidance_scale": f32(np.nan)}, "guidance_scale", "finite"),
    ("infinite guidance", {"guidance_scale": f32(np.inf)}, "guidance_scale", "finite"),
    ("negative guidance", {"guidance_scale": f32(-1)}, "guidance_scale", "[0, 30]"),
    ("seed count mismatch", {"seed": np.array([1, 2], dtype=np.int64)}, "seed", "one value per prompt"),
    ("negative seed", {"seed": np.array([-5], dtype=np.int64)}, "seed", ""),
    ("sequence length zero", {"max_sequence_length": i32(0)}, "max_sequence_length", "[1, 512]"),
    ("sequence length too long", {"max_sequence_length": i32(513)}, "max_sequence_length", "[1, 512]"),
    ("wrong dtype", {"height": f32(128)}, "height", ""),
    ("wrong shape", {"height": i32(128, 128)}, "height", ""),
    ("unknown input", {"colour": i32(3)}, "colour", ""),
    ("over the memory budget", {"prompt": prompts(*[b"cat"] * 8), "seed": None, "height": i32(2048),
                                "width": i32(2048)}, "prompt", "memory budget"),
    ("guidance too large", {"guidance_scale": f32(31)}, "guidance_scale", "[0, 30]"),
]


def stub_processes(server) -> set[int]:
    """PIDs of the python-backend stubs the server runs (a restarted stub would have a new PID)."""
    if getattr(server, "process", None) is None:
        return set()
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == server.process.pid and b"python_backend_stub" in command:
                children.add(int(entry.name))
    return children


def settled_stub_processes(server, timeout_s: float = 60.0) -> set[int]:
    """The stub PIDs once they stop changing: a model reloaded by an earlier test may still be replacing its stub."""
    previous, deadline = stub_processes(server), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
        current = stub_processes(server)
        if current == previous:
            return current
        previous = current
    return previous


@pytest.fixture(scope="module")
def stubs_before(triton_server):
    stubs = settled_stub_processes(triton_server)
    assert stubs or getattr(triton_server, "process", None) is None, "no stub processes found under the server"
    return stubs


@pytest.fixture(scope="module", params=["http", "grpc"])
def protocol(request, triton_server, stubs_before):
    if request.param == "http":
        return httpclient, httpclient.InferenceServerClient(triton_server.http_url, network_timeout=300.0)
    return grpcclient, grpcclient.InferenceServerClient(triton_server.grpc_url)


def request_inputs(module, changes):
    arrays = {name: value for name, value in (GOOD | changes).items() if value is not None}
    return [make_input(module, name, value) for name, value in arrays.items()]


@pytest.mark.parametrize("case, changes, field, text", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_naming_the_field(protocol, case, changes, field, text):
    module, client = protocol
    with pytest.raises(InferenceServerException) as caught:
        client.infer("bls", request_inputs(module, changes))
    message, status = caught.value.message(), str(caught.value.status())
    assert field in message and text in message, message
    assert status in ("400", "StatusCode.INVALID_ARGUMENT"), (status, message)


@pytest.mark.parametrize("case, model, changes, field, text", STAGE_CASES, ids=[c[0] for c in STAGE_CASES])
def test_bad_stage_input_is_rejected_naming_the_field(protocol, case, model, changes, field, text):
    module, client = protocol
    arrays = {name: value for name, value in (STAGE_GOOD[model] | changes).items() if value is not None}
    with pytest.raises(InferenceServerException) as caught:
        client.infer(model, [make_input(module, name, value) for name, value in arrays.items()])
    message, status = caught.value.message(), str(caught.value.status())
    assert field in message and text in message, message
    assert status in ("400", "StatusCode.INVALID_ARGUMENT"), (status, message)


@pytest.mark.parametrize("model", sorted(STAGE_GOOD))
def test_good_stage_requests_succeed(protocol, model):
    module, client = protocol
    result = client.infer(model, [make_input(module, n, v) for n, v in STAGE_GOOD[model].items()])
    assert result.get_response() is not None


def test_server_still_serves_after_bad_inputs(protocol, triton_server, stubs_before):
    module, client = protocol
    result = client.infer("bls", request_inputs(module, {}))
    assert result.as_numpy("images").shape == (1, 3, 64, 64)
    assert triton_server.is_ready()
    # a crashed stub is restarted with a new PID; an old one may still be exiting after an earlier test's reload
    assert stub_processes(triton_server) - stubs_before == set()


def test_prompt_longer_than_clip_limit_is_accepted(protocol, reference_images):
    """CLIP's 77-token truncation is normal FLUX behaviour, not an error (FluxPipeline truncates the same way)."""
    module, client = protocol
    prompt = "a small red house on a green hill under a blue sky " * 10  # > 77 CLIP tokens, < 256 T5 tokens
    result = client.infer("bls", request_inputs(module, {"prompt": prompts(prompt.encode()),
                                                         "height": i32(128), "width": i32(128),
                                                         "num_inference_steps": i32(4)}))
    assert np.abs(result.as_numpy("images")[0] - reference_images(prompt, 1)).max() <= 1e-4


if __name__ == "__main__":
    import sys

    sys.exit(pytest.main([__file__, *sys.argv[1:]]))
