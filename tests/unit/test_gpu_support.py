"""GPU support that can be checked without a GPU: the CUDA memory pools the launcher asks for, peak memory sampling."""

from pathlib import Path

from flux_async.launch.triton_server import TritonServer


def command(monkeypatch, visible: str, **config) -> list[str]:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    return TritonServer(**config)._command(Path("/srv/bin/tritonserver"), Path("/srv/backends"))


def test_one_cuda_memory_pool_per_visible_gpu(monkeypatch):
    pools = [a for a in command(monkeypatch, "0,1", cuda_memory_pool_mb=512) if a.startswith("--cuda-memory-pool")]
    assert pools == ["--cuda-memory-pool-byte-size=0:536870912", "--cuda-memory-pool-byte-size=1:536870912"]


def test_no_cuda_memory_pool_without_a_gpu(monkeypatch):
    assert not [a for a in command(monkeypatch, "") if a.startswith("--cuda-memory-pool")]


def test_peak_memory_is_the_highest_reading_while_the_call_runs():
    from flux_async.measure.gpu import peak_memory_during

    class RisingSampler:
        def __init__(self):
            self.readings = iter([100, 300, 700] + [200] * 10_000)

        def sample(self):
            return [{"memory_used_bytes": next(self.readings)}]

    import time

    assert peak_memory_during(lambda: time.sleep(0.1), RisingSampler(), period_s=0.001) == 700


def test_a_server_pinned_to_one_gpu_asks_for_one_pool_whatever_this_process_sees(monkeypatch):
    """A fleet member's CUDA_VISIBLE_DEVICES (its config's env) decides its pools, not the launcher's."""
    pools = [a for a in command(monkeypatch, "0,1,2,3", env={"CUDA_VISIBLE_DEVICES": "2"})
             if a.startswith("--cuda-memory-pool")]
    assert pools == ["--cuda-memory-pool-byte-size=0:1073741824"]


def test_gpu_lists_are_checked_against_the_machine():
    import pytest

    from flux_async.launch.fleet import parse_gpus

    assert parse_gpus("all", available=4) == ["0", "1", "2", "3"]
    assert parse_gpus(" 1, 03 ", available=4) == ["1", "3"]
    assert parse_gpus("0,1", available=None) == ["0", "1"]  # no NVML: taken as given
    for text, available, message in [("0,4", 4, r"--gpus 4: this machine has 4 GPU\(s\), indices 0 to 3"),
                                     ("0,0", 2, "lists a GPU twice"), ("a", 2, "comma-separated GPU indices"),
                                     ("", 2, "comma-separated GPU indices"), ("-1", 2, "comma-separated"),
                                     ("all", 0, "no GPU that NVML can see")]:
        with pytest.raises(ValueError, match=message):
            parse_gpus(text, available=available)


def test_fleet_members_see_only_their_gpu_on_strided_ports():
    import pytest

    from flux_async.launch.fleet import ServerFleet, member_port
    from flux_async.launch.triton_server import ServerConfig

    fleet = ServerFleet(["1", "3"], ServerConfig(http_port=8000, grpc_port=8001, metrics_port=0, env={"A": "b"}))
    configs = [server.config for server in fleet.servers]
    assert [(c.http_port, c.grpc_port, c.metrics_port) for c in configs] == [(8000, 8001, 0), (8010, 8011, 0)]
    assert [c.env for c in configs] == [{"A": "b", "CUDA_VISIBLE_DEVICES": "1"},
                                        {"A": "b", "CUDA_VISIBLE_DEVICES": "3"}]
    with pytest.raises(ValueError, match="above 65535"):
        member_port(65530, 1)
    assert member_port(65525, 1) == 65535
