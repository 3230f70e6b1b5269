"""T004: one prompt through the real Triton server, over HTTP and gRPC (unary and streaming).

Run alone: `uv run tests/integration/test_single_prompt.py`.
"""

from __future__ import annotations

import queue

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from flux_async.contract import image_tolerance
from flux_async.measure.images import save_png
from flux_async.targets.bls_inputs import bls_inputs

PROMPT = "A cat holding a sign that says hello world"


def client_for(protocol, server):
    if protocol == "http":
        return httpclient, httpclient.InferenceServerClient(server.http_url, network_timeout=600.0)
    return grpcclient, grpcclient.InferenceServerClient(server.grpc_url)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_single_prompt_e2e(protocol, triton_server, reference_images, artifacts):
    module, client = client_for(protocol, triton_server)
    inputs = bls_inputs(module, [PROMPT], seeds=[1234], num_inference_steps=4, guidance_scale=0.0, height=128,
                        width=128)
    result = client.infer("bls", inputs)
    images = result.as_numpy("images")
    assert images.shape == (1, 3, 128, 128) and images.dtype == np.float32
    assert 0.0 <= images.min() and images.max() <= 1.0
    assert result.as_numpy("seeds").tolist() == [1234]
    save_png(images[0], artifacts / f"test_single_prompt_{protocol}.png")
    assert np.abs(images[0] - reference_images(PROMPT, 1234)).max() <= 1e-4


def test_default_request_is_1024_and_matches_flux_pipeline(triton_server, reference_images, artifacts):
    """The plan's quickstart request: prompt, 4 steps, guidance 0; size, seed and sequence length by default."""
    module, client = client_for("http", triton_server)
    result = client.infer("bls", bls_inputs(module, [PROMPT], num_inference_steps=4, guidance_scale=0.0))
    images, seeds = result.as_numpy("images"), result.as_numpy("seeds")
    assert images.shape == (1, 3, 1024, 1024)
    assert 0.0 <= images.min() and images.max() <= 1.0
    save_png(images[0], artifacts / "test_single_prompt_1024.png")
    expected = reference_images(PROMPT, int(seeds[0]), height=1024, width=1024)  # the seed the server chose
    assert np.abs(images[0] - expected).max() <= image_tolerance(1024, 1024)


def test_flux_pipeline_equivalence_pixel_similarity(triton_server, reference_images):
    """The plan's criterion: > 95 % of pixels equal FluxPipeline's (here: as 8-bit values, within 1 level)."""
    module, client = client_for("grpc", triton_server)
    result = client.infer("bls", bls_inputs(module, ["A red bicycle"], seeds=[5], height=256, width=256))
    got = np.round(result.as_numpy("images")[0] * 255)
    want = np.round(reference_images("A red bicycle", 5, height=256, width=256) * 255)
    assert (np.abs(got - want) <= 1).mean() > 0.95


def test_bls_stream_over_grpc_streaming(triton_server, reference_images):
    responses: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    client.start_stream(callback=lambda result, error: responses.put((result, error)))
    try:
        client.async_stream_infer("bls_stream", bls_inputs(grpcclient, [PROMPT], seeds=[77], num_inference_steps=3,
                                                           height=128, width=128))
        received = []
        while True:
            result, error = responses.get(timeout=120)
            assert error is None, error
            received.append(result)
            if result.get_response().parameters["triton_final_response"].bool_param:
                break
    finally:
        client.stop_stream()
    assert [int(r.as_numpy("step")[0]) for r in received] == [1, 2, 3, 3]
    assert all(int(r.as_numpy("total_steps")[0]) == 3 for r in received)
    final = received[-1]
    assert final.as_numpy("seeds").tolist() == [77]
    assert np.abs(final.as_numpy("images")[0] - reference_images(PROMPT, 77, steps=3)).max() <= 1e-4


if __name__ == "__main__":
    import sys

    sys.exit(pytest.main([__file__, *sys.argv[1:]]))
