"""One Triton server per GPU: the pipeline scaled out across a machine's GPUs.

Each server sees only its own GPU (`CUDA_VISIBLE_DEVICES`), so every stage of a request runs on one device and no
tensor crosses GPUs; flux_async spreads the load over the servers' URLs (`target.urls`, `target.balance`). Servers
start in parallel; with fixed ports, server i listens on each base port + i * PORT_STRIDE.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from flux_async.launch.triton_server import ServerConfig, ServerError, TritonServer

PORT_STRIDE = 10  # serve --gpus 0,1: HTTP 8000/8010, gRPC 8001/8011, metrics 8002/8012


def nvml_gpu_count() -> int | None:
    """The GPUs NVML finds on this machine; None where there is no NVML (a CPU machine)."""
    from flux_async.measure.gpu import GpuSampler

    sampler = GpuSampler()
    return len(sampler.sample()) if sampler.available else None


def parse_gpus(text: str, available: int | None) -> list[str]:
    """`all` or a comma-separated list of GPU indices (`0,1`), checked against the `available` count when known
    (None: no NVML here, e.g. a CPU machine — any indices are taken as given). Raises ValueError naming --gpus."""
    text = text.strip()
    if text == "all":
        if not available:
            raise ValueError("--gpus all: this machine has no GPU that NVML can see; give indices, e.g. --gpus 0,1")
        return [str(i) for i in range(available)]
    items = [item.strip() for item in text.split(",")]
    if not text or not all(item.isdigit() for item in items):
        raise ValueError(f"--gpus must be 'all' or comma-separated GPU indices such as 0,1; got {text!r}")
    if len(set(items)) != len(items):
        raise ValueError(f"--gpus lists a GPU twice: {text!r}")
    if available is not None:
        outside = [item for item in items if int(item) >= available]
        if outside:
            raise ValueError(f"--gpus {','.join(outside)}: this machine has {available} GPU(s), indices 0 to "
                             f"{available - 1}")
    return [str(int(item)) for item in items]


def member_port(base: int, index: int) -> int:
    """Server `index`'s port for a base port (0 stays 0: a free port each)."""
    if base == 0:
        return 0
    port = base + index * PORT_STRIDE
    if port > 65535:
        raise ValueError(f"--http-port/--grpc-port/--metrics-port {base}: server {index} would listen on {port}, "
                         f"above 65535; give base ports of at most {65535 - index * PORT_STRIDE}")
    return port


class ServerFleet:
    """Triton servers on `gpus` (one each), sharing `config` otherwise. `start()`/`stop()`, or `with`."""

    def __init__(self, gpus: list[str], config: ServerConfig | None = None):
        if not gpus:
            raise ValueError("a fleet needs at least one GPU")
        config = config or ServerConfig()
        self.gpus = list(gpus)
        self.servers = [TritonServer(replace(
            config, http_port=member_port(config.http_port, i), grpc_port=member_port(config.grpc_port, i),
            metrics_port=member_port(config.metrics_port, i), extra_args=list(config.extra_args),
            env={**config.env, "CUDA_VISIBLE_DEVICES": gpu})) for i, gpu in enumerate(self.gpus)]

    @property
    def grpc_urls(self) -> list[str]:
        return [server.grpc_url for server in self.servers]

    @property
    def http_urls(self) -> list[str]:
        return [server.http_url for server in self.servers]

    def start(self) -> ServerFleet:
        """Start every server at once and wait for all; if one fails, stop the others and raise its error."""
        with ThreadPoolExecutor(len(self.servers)) as pool:
            outcomes = list(pool.map(_start_or_error, self.servers))
        failed = [(gpu, error) for gpu, error in zip(self.gpus, outcomes) if error is not None]
        if failed:
            self.stop()
            raise ServerError("; ".join(f"the server on GPU {gpu} did not start: {error}" for gpu, error in failed))
        return self

    def stop(self) -> None:
        with ThreadPoolExecutor(len(self.servers)) as pool:
            list(pool.map(lambda server: server.stop(), self.servers))

    def __enter__(self) -> ServerFleet:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _start_or_error(server: TritonServer) -> BaseException | None:
    try:
        server.start()
    except Exception as exc:  # reported together with the other servers' outcomes
        return exc
    return None
