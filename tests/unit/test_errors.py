"""The error tree and its exit codes, how the command line reports each error, and the `server` extra: commands
that need it fail with exit 2 and the install command, and the client path never imports it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from flux_async import errors
from flux_async.errors import (
    EXIT_FAILED,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    FluxAsyncError,
    InvalidTarget,
    MissingExtra,
    ScenarioError,
    ServerError,
    Unavailable,
    UsageError,
    WorkersFailed,
    WorkerSplitError,
)
from flux_async.extras import missing_server_modules, require_server_extra
from flux_async.targets.base import TargetUnreachable

FAKE_SCENARIO = ("name: fake\ntarget: {url: 'fake://?latency=2ms'}\nverify: false\n"
                 "workload: {prompts: [a], size: 64x64}\n"
                 "phases:\n  - {name: steady, executor: constant-arrival-rate, rate: 20/s, duration: 0.3s}\n")


@pytest.mark.parametrize("error, code, builtin", [
    (UsageError("x"), 2, ValueError),
    (ScenarioError("s.yaml", ["phases: missing"]), 2, ValueError),
    (WorkerSplitError("x"), 2, ValueError),
    (InvalidTarget("x"), 2, ValueError),
    (MissingExtra("serve", ["torch"]), 2, ValueError),
    (Unavailable("x"), 3, RuntimeError),
    (TargetUnreachable("x"), 3, RuntimeError),
    (ServerError("x"), 3, RuntimeError),
    (WorkersFailed("x", 3), 3, Exception),
    (FluxAsyncError("x"), 1, Exception),
])
def test_every_error_carries_its_exit_code_and_stays_the_builtin_callers_catch(error, code, builtin):
    assert isinstance(error, FluxAsyncError) and isinstance(error, builtin)
    assert error.exit_code == code


def test_the_exit_codes_are_those_the_readme_documents():
    assert (errors.EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE) == (0, 1, 2, 3)


def test_the_errors_are_still_importable_from_their_old_homes():
    from flux_async.launch.triton_server import ServerError as launch_server_error
    from flux_async.run.runner import UsageError as runner_usage_error
    from flux_async.run.workers import WorkerSplitError as workers_split_error
    from flux_async.scenario.config import ScenarioError as config_scenario_error

    assert (launch_server_error, runner_usage_error, workers_split_error, config_scenario_error) == (
        ServerError, UsageError, WorkerSplitError, ScenarioError)


def test_a_worker_failure_exits_with_the_worst_workers_code():
    assert WorkersFailed("a worker could not run", 2).exit_code == 2
    assert WorkersFailed.exit_code == EXIT_FAILED  # the class default is untouched


def test_the_module_docstring_draws_every_error():
    classes = {name for name, value in vars(errors).items()
               if isinstance(value, type) and issubclass(value, FluxAsyncError)}
    assert classes | {"TargetUnreachable"} <= set(errors.__doc__.replace("(", " ").split())


def cli(*args: str, cwd=None, prelude: str = "") -> subprocess.CompletedProcess:
    """`python -m flux_async ARGS` in a fresh interpreter; `prelude` runs first (e.g. to hide a package)."""
    code = f"{prelude}\nimport sys\nfrom flux_async.cli import main\nsys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd)


def test_a_bad_scenario_exits_2_with_its_problems_and_no_traceback(tmp_path):
    (tmp_path / "bad.yaml").write_text("a: [\n")
    result = cli("run", str(tmp_path / "bad.yaml"))
    assert result.returncode == 2
    assert result.stderr.startswith(f"flux_async run: {tmp_path / 'bad.yaml'}: 1 problem(s):")
    assert "not valid YAML" in result.stderr and "Traceback" not in result.stderr + result.stdout


def test_a_usage_error_exits_2_naming_the_command(tmp_path):
    result = cli("report", "html", str(tmp_path / "none.json"))
    assert result.returncode == 2
    assert result.stderr == f"flux_async report html: error: no such file: {tmp_path / 'none.json'}\n"


def test_an_unreachable_target_exits_3_on_the_runs_console(tmp_path):
    (tmp_path / "s.yaml").write_text(FAKE_SCENARIO)
    result = cli("run", str(tmp_path / "s.yaml"), "--url", "localhost:1", "--no-progress")
    assert result.returncode == 3
    assert result.stdout.startswith("flux_async: grpc://localhost:1 is unreachable")
    assert "Traceback" not in result.stderr + result.stdout


def test_an_unusable_target_url_exits_2(tmp_path):
    (tmp_path / "s.yaml").write_text(FAKE_SCENARIO)
    result = cli("run", str(tmp_path / "s.yaml"), "--url", "ftp://x:1", "--no-progress")
    assert result.returncode == 2 and result.stdout.startswith("flux_async: target.urls: URL 'ftp://x:1'")


def test_missing_server_modules_sees_a_package_the_import_system_cannot_find(monkeypatch):
    assert missing_server_modules() == []  # this environment has the extra
    require_server_extra("serve")

    class Hide:
        def find_spec(self, name, path=None, target=None):
            if name in ("torch", "pytriton"):
                raise ModuleNotFoundError(name=name)

    monkeypatch.setattr(sys, "meta_path", [Hide(), *sys.meta_path])
    for name in ("torch", "pytriton"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert missing_server_modules() == ["torch", "pytriton"]
    with pytest.raises(MissingExtra) as caught:
        require_server_extra("serve")
    assert caught.value.missing == ["torch", "pytriton"] and caught.value.exit_code == 2
    assert str(caught.value) == ("serve needs the server extra, and torch, pytriton are not installed: "
                                 "pip install 'flux_async[server]'")


@pytest.mark.parametrize("command", [["serve"], ["make-tiny-flux", "{tmp}/tiny"], ["run", "{tmp}/local.yaml"],
                                     ["capacity", "{tmp}/local.yaml", "--slo", "p(99) < 1s"]])
def test_commands_that_need_the_server_extra_exit_2_naming_the_install_command(tmp_path, command, hide_packages):
    (tmp_path / "local.yaml").write_text(FAKE_SCENARIO.replace("target: {url: 'fake://?latency=2ms'}\n", ""))
    args = [a.format(tmp=tmp_path) for a in command]
    result = cli(*args, prelude=hide_packages({"torch"}))
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith(f"flux_async {command[0]}: error: ")
    assert "torch is not installed: pip install 'flux_async[server]'" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "tiny").exists()


def test_a_client_run_and_its_reports_never_import_the_server_extra(client_run):
    """`run` with every output, then `report merge` and `report html`, in an interpreter where the server extra's
    packages cannot be imported (importing one would fail the run, not just show up in sys.modules): the session's
    client_run (tests/unit/conftest.py), which other tests read too."""
    assert client_run.returncode == 0, client_run.stdout + client_run.stderr
    assert client_run.outcome == {"code": 0, "at_import": [], "after_run": []}
    assert client_run.report["passed"] and (client_run.folder / "r.png").is_file()
