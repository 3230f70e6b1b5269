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
