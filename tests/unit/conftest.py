"""Fixtures of the unit tests: one real client-only run against the fake target, shared by the tests that read what it
wrote, and the import hook that makes packages look uninstalled."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pytest

from flux_async.extras import SERVER_MODULES

# A meta path finder on the real import machinery: the named packages look uninstalled.
HIDE = textwrap.dedent("""
    import sys
    class Hide:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {hidden!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    sys.meta_path.insert(0, Hide())
""")

# a 1 s warm-up at 20/s, then 40/s for 2 s, each request answered in 5 ms
FAKE_RUN_SCENARIO = (
    "name: fake\ntarget: {url: 'fake://?latency=5ms'}\nverify: false\nworkload: {prompts: [a], size: 64x64}\n"
    "phases:\n  - {name: warm, executor: constant-arrival-rate, rate: 20/s, duration: 1s, warmup: true}\n"
    "  - {name: steady, executor: constant-arrival-rate, rate: 40/s, duration: 2s}\n"
    "thresholds: ['p(99) < 100ms']\n")


@pytest.fixture(scope="session")
def hide_packages():
    """`hide_packages(names)`: Python code that, run first in an interpreter, makes those top-level packages look
    uninstalled."""
    return lambda names: HIDE.format(hidden=set(names))


@dataclass
class ClientRun:
    """What `client_run` left: its folder (s.yaml, r.json, r.hlog, r.html, r.png, saved.html) and the interpreter's
    exit code, console output and last line (a JSON summary)."""

    folder: Path
    returncode: int
    stdout: str
    stderr: str

    @cached_property
    def report(self) -> dict:
        """r.json (shared: copy it before changing it)."""
        return json.loads((self.folder / "r.json").read_text())

    @property
    def hlog(self) -> Path:
        return self.folder / "r.hlog"

    @property
    def outcome(self) -> dict:
        """The commands' exit codes added up, and the server packages imported with flux_async and after them."""
        return json.loads(self.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def client_run(tmp_path_factory) -> ClientRun:
    """One real `run` against the fake target (no server) with every output (report, interval log, HTML page, plot),
    then `report merge` and `report html` on them, in one fresh interpreter where the server extra's packages cannot be
    imported, as on a client-only install. Shared by the tests that only read a real run's outputs (each such run
    costs seconds on 2 cores)."""
    folder = tmp_path_factory.mktemp("client-run")
    (folder / "s.yaml").write_text(FAKE_RUN_SCENARIO)
    files = {name: str(folder / name) for name in ("s.yaml", "r.json", "r.hlog", "r.html", "r.png", "saved.html")}
    # the server packages are hidden: importing one would fail the run, not just show up in sys.modules
    probe = HIDE.format(hidden=set(SERVER_MODULES)) + textwrap.dedent(f"""
        import json
        import flux_async.cli, flux_async.testing.pytest_plugin
        at_import = [m for m in {SERVER_MODULES!r} if m in sys.modules]
        code = flux_async.cli.main(["run", {files["s.yaml"]!r}, "--no-progress", "--report", {files["r.json"]!r},
                                    "--hlog", {files["r.hlog"]!r}, "--html", {files["r.html"]!r},
                                    "--plot", {files["r.png"]!r}])
        code += flux_async.cli.main(["report", "merge", {files["r.hlog"]!r}])
        code += flux_async.cli.main(["report", "html", {files["r.json"]!r}, "--hlog", {files["r.hlog"]!r},
                                     "--output", {files["saved.html"]!r}])
        print(json.dumps({{"code": code, "at_import": at_import,
                          "after_run": [m for m in {SERVER_MODULES!r} if m in sys.modules]}}))
    """)
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    return ClientRun(folder, result.returncode, result.stdout, result.stderr)
