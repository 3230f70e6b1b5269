"""Every error flux_async raises on purpose, and the exit code each one ends the command with.

    FluxAsyncError                  1  base: the command failed
    ├── UsageError (ValueError)     2  a flag, file or value that does not fit
    │   ├── ScenarioError           2    a scenario file with problems, every one listed
    │   ├── WorkerSplitError        2    run --workers N: a phase's load cannot be split N ways
    │   ├── InvalidTarget           2    target.urls that name no usable endpoint
    │   ├── ContractMismatch        2    target.contract does not fit the served model's tensors
    │   └── MissingExtra            2    the command needs `pip install 'flux_async[server]'`
    ├── Unavailable (RuntimeError)  3  nothing to load-test
    │   ├── TargetUnreachable       3    the target cannot be reached or its model is not ready
    │   │                                (defined in flux_async.targets.base)
    │   ├── ServerError             3    a Triton server (embedded or `serve`) could not start
    │   └── ClusterUnavailable      3    run --cluster: Ray cannot be reached or cannot place the agents in time
    └── WorkersFailed               *  run --workers: a worker process could not run (its exit code)

A run that completes is no error: it ends with EXIT_OK or EXIT_FAILED by its report's verdict. This module
imports nothing from flux_async, so every layer can raise these.
"""

from __future__ import annotations

EXIT_OK = 0  # every threshold passed, no image mismatched
EXIT_FAILED = 1  # a threshold failed, an image mismatched, the run was interrupted or a server died
EXIT_USAGE = 2  # a bad scenario or flag
EXIT_UNREACHABLE = 3  # the target is unreachable or the server failed to start


class FluxAsyncError(Exception):
    """Base of flux_async's errors; the command line prints the message (no traceback) and exits `exit_code`."""

    exit_code: int = EXIT_FAILED


class UsageError(FluxAsyncError, ValueError):
    """A flag, file or value that does not fit (exit code 2)."""

    exit_code = EXIT_USAGE


class ContractMismatch(UsageError):
    """The scenario's contract (or bls's) does not fit the served model; `problems` names every tensor."""

    def __init__(self, model: str, problems: list[str]):
        self.problems = problems
        listing = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"the contract does not fit model {model!r} ({len(problems)} problem"
                         f"{'s' if len(problems) != 1 else ''}; run `python -m flux_async inspect URL --model "
                         f"{model}` to see its tensors):\n{listing}")


class ScenarioError(UsageError):
    """A scenario with problems; `problems` lists every one as 'path: message'."""

    def __init__(self, source: str, problems: list[str]):
        super().__init__(f"{source}: {len(problems)} problem(s):\n" + "\n".join(f"  {p}" for p in problems))
        self.problems = problems


class WorkerSplitError(UsageError):
    """The scenario's load cannot be split over that many workers."""


class InvalidTarget(UsageError):
    """The target's URLs name no endpoint flux_async can use."""


class MissingExtra(UsageError):
    """The command needs packages of the `server` extra that are not installed; `missing` names them."""

    def __init__(self, what: str, missing: list[str]):
        verb = "is" if len(missing) == 1 else "are"
        super().__init__(f"{what} needs the server extra, and {', '.join(missing)} {verb} not installed: "
                         "pip install 'flux_async[server]'")
        self.missing = missing


class Unavailable(FluxAsyncError, RuntimeError):
    """There is nothing to load-test: the target or the server is not there (exit code 3)."""

    exit_code = EXIT_UNREACHABLE


class ServerError(Unavailable):
    """The server could not start (or its environment cannot work); the message says why and what to do."""


class ClusterUnavailable(Unavailable):
    """`run --cluster`: the Ray cluster cannot be reached, or cannot place the agents in time (the message says what
    it has)."""


class WorkersFailed(FluxAsyncError):
    """A worker of `run --workers` could not run; the command exits with the worst worker's code."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code
