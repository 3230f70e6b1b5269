"""CUDA graphs for the stage forwards: eager on the CPU; on a GPU, replayed graphs give exactly the eager results,
one graph per input shape, and a forward that cannot be captured falls back to eager with the reason kept."""

import pytest
import torch

from flux_async.pipeline.cuda_graphs import GraphCache
from flux_async.pipeline.stages import DitStage, T5Stage
from flux_async.pipeline.weights import resolve_weights


def test_on_the_cpu_the_forward_runs_eagerly():
    calls = []
    cache = GraphCache(lambda x: calls.append(x) or x * 2, torch.device("cpu"))
    assert not cache.enabled
    assert torch.equal(cache(torch.ones(2)), torch.full((2,), 2.0)) and len(calls) == 1 and not cache.graphs


def test_graphs_are_on_by_default_on_a_gpu_and_can_be_turned_off(monkeypatch):
    monkeypatch.delenv("FLUX_ASYNC_CUDA_GRAPHS", raising=False)
    assert GraphCache(lambda x: x, torch.device("cuda", 0)).enabled
    assert not GraphCache(lambda x: x, torch.device("cpu")).enabled
    for off in ("0", "false", "NO"):
        monkeypatch.setenv("FLUX_ASYNC_CUDA_GRAPHS", off)
        assert not GraphCache(lambda x: x, torch.device("cuda", 0)).enabled
    monkeypatch.setenv("FLUX_ASYNC_CUDA_GRAPHS", "1")
    assert GraphCache(lambda x: x, torch.device("cuda", 0)).enabled


@pytest.mark.gpu
def test_replayed_transformer_equals_eager(monkeypatch):
    monkeypatch.setenv("FLUX_ASYNC_CUDA_GRAPHS", "1")
    device, dtype = torch.device("cuda", 0), torch.bfloat16
    stage = DitStage(resolve_weights(), device, dtype)  # the cached tiny weights (benchmarks/gpu carries them)
    config = stage.transformer.config
    for batch in (1, 3, 1):  # the second batch-1 call replays the first graph with new inputs
        hidden = torch.randn(batch, 64, config.in_channels, device=device, dtype=dtype)
        embeds = torch.randn(batch, 32, config.joint_attention_dim, device=device, dtype=dtype)
        pooled = torch.randn(batch, config.pooled_projection_dim, device=device, dtype=dtype)
        timestep = torch.full((batch,), 700.0, device=device, dtype=dtype)
        graphed = stage.predict(hidden, embeds, pooled, timestep, (8, 8), None)
        stage.forward.enabled = False
        eager = stage.predict(hidden, embeds, pooled, timestep, (8, 8), None)
        stage.forward.enabled = True
        assert stage.forward.failure is None and torch.equal(graphed, eager)
    assert len(stage.forward.graphs) == 2


@pytest.mark.gpu
def test_replayed_t5_equals_eager(monkeypatch):
    monkeypatch.setenv("FLUX_ASYNC_CUDA_GRAPHS", "1")
    stage = T5Stage(resolve_weights(), torch.device("cuda", 0), torch.bfloat16)
    graphed = stage.encode(["a cat", "a lighthouse at dusk"], 64)
    stage.forward.enabled = False
    eager = stage.encode(["a cat", "a lighthouse at dusk"], 64)
    assert stage.forward.failure is None and torch.equal(graphed, eager)


@pytest.mark.gpu
def test_a_forward_that_cannot_be_captured_runs_eagerly():
    # .item() synchronizes, which a capture cannot hold
    cache = GraphCache(lambda x: x * float(x.sum().item()), torch.device("cuda", 0), enabled=True)
    x = torch.ones(4, device="cuda")
    assert torch.equal(cache(x), torch.full((4,), 4.0, device="cuda"))
    assert not cache.enabled and cache.failure
    assert torch.equal(cache(x), torch.full((4,), 4.0, device="cuda"))
