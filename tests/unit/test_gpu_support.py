"""GPU support that can be checked without a GPU: the CUDA memory pools the launcher asks for, peak memory sampling."""

from pathlib import Path

from flux_async.server import TritonServer


def command(monkeypatch, visible: str, **config) -> list[str]:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    return TritonServer(**config)._command(Path("/srv/bin/tritonserver"), Path("/srv/backends"))


def test_one_cuda_memory_pool_per_visible_gpu(monkeypatch):
    pools = [a for a in command(monkeypatch, "0,1", cuda_memory_pool_mb=512) if a.startswith("--cuda-memory-pool")]
    assert pools == ["--cuda-memory-pool-byte-size=0:536870912", "--cuda-memory-pool-byte-size=1:536870912"]


def test_no_cuda_memory_pool_without_a_gpu(monkeypatch):
    assert not [a for a in command(monkeypatch, "") if a.startswith("--cuda-memory-pool")]


def test_peak_memory_is_the_highest_reading_while_the_call_runs():
    from flux_async.gpu import peak_memory_during

    class RisingSampler:
        def __init__(self):
            self.readings = iter([100, 300, 700] + [200] * 10_000)

        def sample(self):
            return [{"memory_used_bytes": next(self.readings)}]

    import time

    assert peak_memory_during(lambda: time.sleep(0.1), RisingSampler(), period_s=0.001) == 700
