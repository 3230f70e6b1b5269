"""Fixtures of the integration tests: one run of the main job against the session server, shared by the tests that
read what it wrote."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class BurstRun:
    """The finished `run` and its folder: r.json, r.hlog and r.html."""

    folder: Path
    result: subprocess.CompletedProcess


@pytest.fixture(scope="session")
def burst_run(triton_server, tmp_path_factory) -> BurstRun:
    """`python -m flux_async run scenarios/burst.yaml` for 4 s against the session server, with every output: the
    shipped main job end to end (test_run_scenarios) and the pages it writes (test_html_report) read the same run."""
    folder = tmp_path_factory.mktemp("burst")
    result = subprocess.run([sys.executable, "-m", "flux_async", "run", "scenarios/burst.yaml", "--url",
                             f"grpc://{triton_server.grpc_url}", "--duration", "4", "--no-progress",
                             "--report", str(folder / "r.json"), "--hlog", str(folder / "r.hlog"),
                             "--html", str(folder / "r.html")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    return BurstRun(folder, result)


@pytest.fixture(scope="module")
def sleeper_server(tiny_weights):
    """Triton serving tests/fixtures/sleep_repository: one `sleeper` instance, 100 ms per request, so 10 requests/s
    at most (a capacity a search must find)."""
    from flux_async.launch.triton_server import TritonServer

    with TritonServer(model_repository=ROOT / "tests" / "fixtures" / "sleep_repository",
                      weights=str(tiny_weights)) as server:
        yield server


@pytest.fixture(scope="module")
def stand_in_server(tiny_weights):
    """Triton serving tests/fixtures/stand_in_repository: a `bls` with the contract's tensors answering at once with an
    image drawn from each seed (starts in seconds; the tests that need the contract, not the pipeline)."""
    from flux_async.launch.triton_server import TritonServer

    with TritonServer(model_repository=ROOT / "tests" / "fixtures" / "stand_in_repository",
                      weights=str(tiny_weights)) as server:
        yield server


@pytest.fixture(scope="session")
def ray_cluster():
    """A real local Ray cluster for the session: a head node (0 CPUs) and two worker nodes of 1 CPU each, separate
    `ray start` processes with token auth on free ports (flux_async.testing.ray_cluster). Torn down at the end of
    the session, failed tests or not. `ray_cluster.startup_s` is how long it took to come up."""
    from flux_async.testing.ray_cluster import LocalRayCluster

    with LocalRayCluster(workers=2, cpus_per_worker=1) as cluster:
        yield cluster


@pytest.fixture
def ray_driver(ray_cluster):
    """This process connected to `ray_cluster` as a Ray driver for the test (`ray.init` / `ray.shutdown`)."""
    with ray_cluster.connect() as context:
        yield context
