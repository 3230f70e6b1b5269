"""pytest plugin (loaded automatically once flux_async is installed): fixtures to regression-test a FLUX service.

    async def test_bursts_are_correct(run_scenario):
        report = await run_scenario("scenarios/burst.yaml", duration_s=10)
        assert report["passed"] and report["verification"]["mismatches"] == 0

Fixtures: `flux_server` (one Triton per session: started on `flux_weights` — the tiny pipeline by default — or an
existing one given with --flux-http-url/--flux-grpc-url), `run_scenario` (runs a scenario file or dict against it
through the engine and returns the JSON report). Markers: `slow` and `gpu` tests are skipped unless --run-slow /
--run-gpu is given, and the skip says so. Under pytest-xdist with `--dist loadgroup`, the tests on `flux_server` run
on one worker (one server for the session, as without xdist).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path

import pytest


def pytest_addoption(parser):
    group = parser.getgroup("flux_async")
    group.addoption("--flux-http-url", default=None, help="use this Triton's HTTP endpoint (host:port)")
    group.addoption("--flux-grpc-url", default=None, help="use this Triton's gRPC endpoint (host:port)")
    group.addoption("--flux-weights", default=None, help="weights for the server the fixtures start")
    group.addoption("--run-slow", action="store_true", help="also run tests marked slow")
    group.addoption("--run-gpu", action="store_true", help="also run tests marked gpu (on a GPU machine)")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: a long test; skipped unless --run-slow")
    config.addinivalue_line("markers", "gpu: needs a GPU; skipped unless --run-gpu")


def pytest_collection_modifyitems(config, items):
    """Skip `slow` and `gpu` tests unless asked."""
    reasons = {"slow": None if config.getoption("--run-slow") else "slow: pass --run-slow to run it",
               "gpu": None if config.getoption("--run-gpu") else "gpu: needs a GPU; pass --run-gpu on a GPU machine"}
    for item in items:
        for marker, reason in reasons.items():
            if reason and marker in item.keywords:
                item.add_marker(pytest.mark.skip(reason=reason))


def pytest_itemcollected(item):
    """Every test on `flux_server` in one pytest-xdist group: `pytest -n N --dist loadgroup` runs them on one worker,
    which starts one server, not one per worker (marked as each test is collected, before xdist reads the groups)."""
    if "flux_server" in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.xdist_group("flux_server"))


@dataclass
class RemoteServer:
    """An already running Triton (the fixtures neither start nor stop it)."""

    http_url: str
    grpc_url: str


@pytest.fixture(scope="session")
def flux_weights(request):
    """Weights for the server `flux_server` starts (None: the tiny pipeline). Override it in a conftest.py."""
    return request.config.getoption("--flux-weights")


@pytest.fixture(scope="session")
def flux_server(request, flux_weights):
    """The Triton under test: --flux-http-url/--flux-grpc-url, or one started for the session (explicit model
    control, so tests can swap models with `flux_async.testing.model_swap.swapped_model`)."""
    http, grpc = request.config.getoption("--flux-http-url"), request.config.getoption("--flux-grpc-url")
    if http or grpc:
        if not (http and grpc):
            raise pytest.UsageError("give both --flux-http-url and --flux-grpc-url")
        yield RemoteServer(http, grpc)
        return
    from flux_async.errors import MissingExtra
    from flux_async.extras import require_server_extra

    try:
        require_server_extra("the flux_server fixture without --flux-http-url/--flux-grpc-url")
    except MissingExtra as error:
        pytest.fail(str(error), pytrace=False)
    from flux_async.launch.triton_server import TritonServer

    # a short exit timeout: at the session's end Triton would otherwise wait up to 30 s for clients to go
    with TritonServer(weights=flux_weights, model_control_mode="explicit",
                      extra_args=["--exit-timeout-secs=5"]) as server:
        yield server


@pytest.fixture
def run_scenario(flux_server, tmp_path):
    """`await run_scenario(path_or_dict, **RunOptions fields)` → the JSON report (plus "exit_code" and "output")."""
    from rich.console import Console

    from flux_async.errors import InvalidTarget, Unavailable
    from flux_async.run.runner import RunOptions
    from flux_async.run.runner import run_scenario as run
    from flux_async.scenario.config import load_scenario, parse_scenario

    async def runner(scenario, **options) -> dict:
        parsed = load_scenario(scenario) if isinstance(scenario, (str, Path)) else parse_scenario(scenario)
        if not parsed.target.urls:
            url = flux_server.http_url if parsed.target.protocol == "http" else flux_server.grpc_url
            parsed = replace(parsed, target=replace(parsed.target, urls=[url]))
        run_options = RunOptions(**({"progress": False, "report": tmp_path / "report.json"} | options))
        output = io.StringIO()
        try:
            report, code = await run(parsed, run_options, Console(file=output, width=160))
        except (InvalidTarget, Unavailable) as error:
            pytest.fail(f"the scenario did not run (exit code {error.exit_code}): {error}\n{output.getvalue()}")
        return report | {"exit_code": code, "output": output.getvalue()}

    return runner
