"""The run session: target and verifier set-up shared by `run`, the workers and `capacity`; imports one way."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest
from rich.console import Console

import flux_async.run
from flux_async.errors import EXIT_UNREACHABLE, EXIT_USAGE, FluxAsyncError
from flux_async.run.session import RunOptions, session
from flux_async.scenario.config import parse_scenario
from flux_async.targets.base import Target

RUN = Path(flux_async.run.__file__).parent


def scenario(url: str, **target):
    return parse_scenario({"name": "t", "target": {"url": url, **target}, "workload": {"prompts": ["a"]},
                           "phases": [{"executor": "constant-concurrency", "concurrency": 1, "duration": "1s"}]})


async def test_a_session_opens_the_target_and_closes_it():
    async with session(scenario("grpc://x:1"), RunOptions(url="fake://?latency=1ms", protocol="http"),
                       Console(file=io.StringIO())) as s:
        assert isinstance(s.target, Target) and s.target.protocol == "http" and not s.embedded
        assert s.scenario.target.urls == ["fake://?latency=1ms"]  # the command line's URL and protocol won
        assert s.verifier is not None and not s.verifier.enabled  # the fake target makes no images


@pytest.mark.parametrize("url, code, said", [
    ("ftp://h:1", EXIT_USAGE, "target.urls: URL 'ftp://h:1'"),
    ("http://127.0.0.1:9", EXIT_UNREACHABLE, "http://127.0.0.1:9 is unreachable"),
])
async def test_a_target_that_cannot_be_used_raises_with_its_exit_code(url, code, said):
    console = Console(file=io.StringIO(), width=200)
    with pytest.raises(FluxAsyncError) as error:
        async with session(scenario(url, protocol="http", connect_timeout="2s"), RunOptions(), console):
            pass
    assert error.value.exit_code == code and said in str(error.value)


@pytest.mark.parametrize("module", ["session.py", "outputs.py", "workers.py", "capacity.py"])
def test_nothing_in_run_imports_the_runner(module):
    tree = ast.parse((RUN / module).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "flux_async.run.runner" not in imported
