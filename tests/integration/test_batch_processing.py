"""T005: several prompts per request, and concurrent requests that Triton's dynamic batchers combine.

Run alone: `uv run tests/integration/test_batch_processing.py`.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from flux_async.contract import image_tolerance
from flux_async.measure.images import save_png
from flux_async.targets.bls_inputs import bls_inputs

PROMPTS = ["A beautiful landscape with mountains", "A futuristic city with flying cars", "A cat playing with a ball"]
SEEDS = [11, 22, 33]
TOLERANCE = image_tolerance(128, 128)  # docs/bls.md: max abs diff 1e-4 at sizes up to 256


@pytest.fixture(scope="module")
def http(triton_server):
    return httpclient.InferenceServerClient(triton_server.http_url, concurrency=8, network_timeout=600.0)


def infer(client, module, prompts, seeds, **kwargs):
    kwargs = {"height": 128, "width": 128} | kwargs
    result = client.infer("bls", bls_inputs(module, prompts, seeds=seeds, **kwargs))
    return result.as_numpy("images"), result.as_numpy("seeds")


def test_batch_prompts(http, reference_images, artifacts):
    images, seeds = infer(http, httpclient, PROMPTS, SEEDS)
    assert images.shape == (3, 3, 128, 128)
    assert seeds.tolist() == SEEDS
    for i, (prompt, seed) in enumerate(zip(PROMPTS, SEEDS)):
        save_png(images[i], artifacts / f"batch_test_{i}.png")
        alone, _ = infer(http, httpclient, [prompt], [seed])
        assert np.abs(images[i] - alone[0]).max() <= TOLERANCE, f"batch item {i} differs from its single run"
        assert np.abs(images[i] - reference_images(prompt, seed)).max() <= TOLERANCE


def test_batch_without_seeds_returns_the_seeds_it_used(triton_server, reference_images):
    client = grpcclient.InferenceServerClient(triton_server.grpc_url)
    images, seeds = infer(client, grpcclient, PROMPTS[:2], None)
    assert seeds.shape == (2,) and all(s >= 0 for s in seeds.tolist())
    for image, prompt, seed in zip(images, PROMPTS[:2], seeds.tolist()):
        assert np.abs(image - reference_images(prompt, seed)).max() <= TOLERANCE


def batch_counts(client, model: str) -> dict[int, int]:
    stats = client.get_inference_statistics(model)["model_stats"][0]
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}


@pytest.fixture
def patient_dit_batcher(http):
    """dit_transformer reloaded (model-control API) with a 100 ms batching window, restored afterwards.

    With the default 2 ms window two bls instances ping-pong on the one dit instance (each step arrives while the
    other executes), so on this CPU they are rarely combined; a wide window puts them in lockstep."""
    config = http.get_model_config("dit_transformer")
    config["dynamic_batching"]["max_queue_delay_microseconds"] = 100_000
    http.load_model("dit_transformer", config=json.dumps(config))
    yield
    http.load_model("dit_transformer")


def test_concurrent_requests_batched_across_requests_equal_their_single_runs(http, reference_images,
                                                                              patient_dit_batcher):
    """Single-prompt requests sent at once reach the stage models together; the dynamic batcher combines them,
    and every image must still equal its own FluxPipeline run (sizes mixed, so groups split by latent grid)."""
    jobs = [(f"{PROMPTS[i % 3]}, variation {i}", 100 + i, 128 if i % 3 else 160) for i in range(8)]
    before = batch_counts(http, "dit_transformer")
    pending = [http.async_infer("bls", bls_inputs(httpclient, [prompt], seeds=[seed], height=128, width=width))
               for prompt, seed, width in jobs]  # all in flight at once (the client has 8 connections)
    results = [(r.as_numpy("images"), r.as_numpy("seeds")) for r in (p.get_result(timeout=600) for p in pending)]
    after = batch_counts(http, "dit_transformer")
    combined = sum(after.get(size, 0) - before.get(size, 0) for size in after if size >= 2)
    assert combined > 0, f"no dit_transformer execution combined requests: {before} -> {after}"
    for (prompt, seed, width), (images, seeds) in zip(jobs, results):
        assert seeds.tolist() == [seed]
        assert np.abs(images[0] - reference_images(prompt, seed, width=width)).max() <= TOLERANCE, (prompt, seed)


if __name__ == "__main__":
    import sys

    sys.exit(pytest.main([__file__, *sys.argv[1:]]))

