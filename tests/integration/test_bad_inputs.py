"""Bad `bls` requests (DESIGN.md §2), over HTTP and gRPC: each is rejected with INVALID_ARG naming the input, and
the server keeps serving.

Run alone: `uv run tests/integration/test_bad_inputs.py`.
"""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from flux_async.bls_inputs import make_input

GOOD = {"prompt": np.array([b"a red bicycle"], dtype=np.object_), "height": np.array([64], dtype=np.int32),
        "width": np.array([64], dtype=np.int32), "num_inference_steps": np.array([1], dtype=np.int32),
        "seed": np.array([1], dtype=np.int64)}


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
]


@pytest.fixture(scope="module", params=["http", "grpc"])
def protocol(request, triton_server):
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


def test_server_still_serves_after_bad_inputs(protocol, triton_server):
    module, client = protocol
    result = client.infer("bls", request_inputs(module, {}))
    assert result.as_numpy("images").shape == (1, 3, 64, 64)
    assert triton_server.is_ready()


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
