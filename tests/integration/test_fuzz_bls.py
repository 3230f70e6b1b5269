"""Fuzzing `bls` with hypothesis (bounded): whatever the inputs, the server answers — images for a valid request,
INVALID_ARG naming the offending input otherwise — and keeps serving."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from flux_async.pipeline.validation import InvalidInput, parse_bls_inputs
from flux_async.targets.bls_inputs import make_input

INTS = {"num_inference_steps": [1, 2, 0, -3, 101, 2**31 - 1], "height": [64, 80, 0, 63, 1000, 4096, -64],
        "width": [64, 96, 16, 65, 2064], "max_sequence_length": [64, 512, 0, 513, -1]}
PROMPTS = ["a cat", "  ", "", "高速道路の猫", "x " * 300, "emoji 🐱 ok"]


@st.composite
def bls_requests(draw):
    """Inputs drawn from valid and invalid values, now and then with a wrong dtype or shape, missing or extra."""
    count = draw(st.sampled_from([1, 2, 0, 9]))
    arrays = {"prompt": np.array([draw(st.sampled_from(PROMPTS)).encode() if draw(st.booleans()) else b"\xff\xfe"
                                  for _ in range(count)], dtype=np.object_)}
    for name, values in INTS.items():
        if draw(st.booleans()):
            arrays[name] = np.array([draw(st.sampled_from(values))], dtype=np.int32)
    if draw(st.booleans()):
        arrays["guidance_scale"] = np.array([draw(st.sampled_from([0.0, 3.5, -1.0, 31.0, float("nan"),
                                                                    float("inf")]))], dtype=np.float32)
    if draw(st.booleans()):
        arrays["seed"] = np.array(draw(st.lists(st.sampled_from([0, 1, 2**62, -5]), min_size=max(count - 1, 0),
                                                max_size=count + 1)), dtype=np.int64)
    mutation = draw(st.sampled_from(["none", "none", "none", "dtype", "shape", "missing", "extra"]))
    names = sorted(arrays)
    if mutation == "dtype":
        name = draw(st.sampled_from([n for n in names if n != "prompt"] or ["height"]))
        arrays[name] = np.array([7.0], dtype=np.float64)
    elif mutation == "shape" and [n for n in names if n not in ("prompt", "seed")]:
        name = draw(st.sampled_from([n for n in names if n not in ("prompt", "seed")]))
        arrays[name] = np.repeat(arrays[name], 2)
    elif mutation == "missing":
        arrays.pop("prompt")
    elif mutation == "extra":
        arrays["negative_prompt"] = np.array([b"blurry"], dtype=np.object_)
    return arrays


@pytest.fixture(scope="module")
def client(triton_server):
    return grpcclient.InferenceServerClient(triton_server.grpc_url)


@pytest.fixture(scope="module")
def token_count(reference_images):
    tokenizer = reference_images.pipe.tokenizer_2
    return lambda prompt: len(tokenizer(prompt).input_ids)


def expected_problem(arrays, token_count) -> str | None:
    """The input our own validation (or Triton's checks of names, dtypes and shapes) objects to, or None."""
    types = {"num_inference_steps": np.int32, "height": np.int32, "width": np.int32, "max_sequence_length": np.int32,
             "guidance_scale": np.float32, "seed": np.int64}
    for name, value in arrays.items():
        if name not in types and name != "prompt":
            return name  # unknown input
        if name in types and (value.dtype != types[name] or (name != "seed" and value.shape != (1,))):
            return name
    try:
        parse_bls_inputs(arrays, "schnell", token_count)
    except InvalidInput as exc:
        return exc.field
    return None


@settings(max_examples=60, deadline=None, derandomize=True,  # reproducible in CI; bounded: 60 requests
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(arrays=bls_requests())
def test_bls_answers_every_input(client, token_count, arrays):
    problem = expected_problem(arrays, token_count)
    inputs = [make_input(grpcclient, name, value) for name, value in arrays.items()]
    if problem is None:
        result = client.infer("bls", inputs, client_timeout=300)
        h = int(arrays.get("height", [1024])[0])
        w = int(arrays.get("width", [1024])[0])
        assert result.as_numpy("images").shape == (len(arrays["prompt"]), 3, h, w)
        return
    with pytest.raises(InferenceServerException) as caught:
        client.infer("bls", inputs, client_timeout=300)
    assert str(caught.value.status()) == "StatusCode.INVALID_ARGUMENT", caught.value.message()
    assert problem in caught.value.message()


def test_server_is_healthy_after_fuzzing(client, triton_server):
    assert client.is_server_ready() and triton_server.is_ready()
