"""`image_encoding` through the real server (docs/bls.md): the same request returned as FP32, UINT8 and PNG over gRPC
and HTTP, the streaming model's final response, and bad values rejected per request.

Run alone: `uv run tests/integration/test_image_encodings.py`.
"""

from __future__ import annotations

import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from flux_async.contract import IMAGE_ENCODINGS
from flux_async.measure.images import decode_image, to_uint8
from flux_async.targets.bls_inputs import bls_inputs

PROMPTS, SEEDS = ["A cat holding a sign that says hello world", "A futuristic city"], [11, 12]
SETTINGS = dict(seeds=SEEDS, num_inference_steps=1, height=128, width=128)


def output_names(result) -> set[str]:
    response = result.get_response()
    outputs = response["outputs"] if isinstance(response, dict) else response.outputs
    return {o["name"] if isinstance(o, dict) else o.name for o in outputs}


@pytest.fixture(scope="module", params=["grpc", "http"])
def protocol(request, triton_server):
    if request.param == "http":
        return httpclient, httpclient.InferenceServerClient(triton_server.http_url, network_timeout=300.0)
    return grpcclient, grpcclient.InferenceServerClient(triton_server.grpc_url)


@pytest.fixture(scope="module")
def results(protocol) -> dict:
    """One request of 2 prompts with fixed seeds, in each encoding (fp32 as today: no image_encoding sent)."""
    module, client = protocol
    return {encoding: client.infer("bls", bls_inputs(module, PROMPTS, **SETTINGS,
                                                     image_encoding=None if encoding == "fp32" else encoding))
            for encoding in IMAGE_ENCODINGS}


def test_each_encoding_returns_only_its_images_and_the_seeds(results):
    assert {e: output_names(r) for e, r in results.items()} == {
        "fp32": {"images", "seeds"}, "uint8": {"images_uint8", "seeds"}, "png": {"images_png", "seeds"}}
    assert all(r.as_numpy("seeds").tolist() == SEEDS for r in results.values())


def test_uint8_is_to_uint8_of_the_fp32_images_exactly(results):
    floats, pixels = results["fp32"].as_numpy("images"), results["uint8"].as_numpy("images_uint8")
    assert floats.shape == (2, 3, 128, 128) and pixels.shape == (2, 128, 128, 3) and pixels.dtype == np.uint8
    for image, got in zip(floats, pixels):
        np.testing.assert_array_equal(got, to_uint8(image))


def test_png_decodes_to_the_uint8_images_exactly(results):
    files, pixels = results["png"].as_numpy("images_png"), results["uint8"].as_numpy("images_uint8")
    assert files.shape == (2,)
    for data, got in zip(files, pixels):
        assert bytes(data[:8]) == b"\x89PNG\r\n\x1a\n"
        np.testing.assert_array_equal(decode_image(data), got.transpose(2, 0, 1).astype(np.float32) / 255)


def test_naming_an_output_of_another_encoding_is_rejected(protocol):
    module, client = protocol
    asked = [module.InferRequestedOutput(name) for name in ("images", "seeds")]
    with pytest.raises(InferenceServerException) as caught:
        client.infer("bls", bls_inputs(module, PROMPTS[:1], seeds=[1], num_inference_steps=1, height=64, width=64,
                                       image_encoding="png"), outputs=asked)
    message = caught.value.message()
    assert "image_encoding" in message and "output images" in message, message
    assert str(caught.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT")


def test_bad_encoding_is_rejected_and_the_server_keeps_serving(protocol, triton_server):
    module, client = protocol
    with pytest.raises(InferenceServerException) as caught:
        client.infer("bls", bls_inputs(module, PROMPTS[:1], **(SETTINGS | {"seeds": [1]}), image_encoding="jpeg"))
    assert "image_encoding must be one of fp32, uint8, png, got 'jpeg'" in caught.value.message()
    assert str(caught.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT")
    assert triton_server.is_ready()
    after = client.infer("bls", bls_inputs(module, PROMPTS[:1], **(SETTINGS | {"seeds": [1]}), image_encoding="uint8"))
    assert after.as_numpy("images_uint8").shape == (1, 128, 128, 3)


def test_bls_stream_final_response_carries_the_chosen_images(triton_server):
    responses: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    pixels = client.infer("bls", bls_inputs(grpcclient, PROMPTS, **SETTINGS, image_encoding="uint8"))
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        client.async_stream_infer("bls_stream", bls_inputs(grpcclient, PROMPTS, **SETTINGS, image_encoding="png"))
        received = []
        while not received or not received[-1].get_response().parameters["triton_final_response"].bool_param:
            result, error = responses.get(timeout=120)
            assert error is None, error
            received.append(result)
    finally:
        client.stop_stream()
    assert [output_names(r) for r in received] == [{"step", "total_steps"},
                                                   {"images_png", "seeds", "step", "total_steps"}]
    final = received[-1]
    assert final.as_numpy("seeds").tolist() == SEEDS
    # the same request as bls's: within one 8-bit level (another model instance may round a float differently)
    for data, want in zip(final.as_numpy("images_png"), pixels.as_numpy("images_uint8")):
        got = np.round(decode_image(data) * 255).astype(np.int16)
        assert np.abs(got - want.transpose(2, 0, 1)).max() <= 1


if __name__ == "__main__":
    import sys

    sys.exit(pytest.main([__file__, *sys.argv[1:]]))
