"""Shared by the benchmark scripts: the no-op server, running a client as a process and reading its CPU time, and
writing results (each script then re-renders BENCHMARKS.md)."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
NOOP_REPOSITORY = ROOT / "benchmarks" / "noop_repository"
PROMPT_BODY = ('{"inputs":[{"name":"prompt","shape":[1],"datatype":"BYTES","data":["a cat"]}],'
               '"outputs":[{"name":"seeds"}]}')


def machine() -> str:
    """The machine a figure came from, in words."""
    cpu = platform.processor() or platform.machine()
    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
        cpu = model
    except (OSError, StopIteration):
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}")


@contextmanager
def noop_server(**env):
    """A Triton serving only the no-op bls stand-in (model `noop`), on free ports."""
    sys.path.insert(0, str(ROOT))
    from flux_async.launch.triton_server import TritonServer

    with TritonServer(model_repository=NOOP_REPOSITORY, env={k: str(v) for k, v in env.items()}) as server:
        yield server


def run_measured(command: list[str], timeout: float = 600, cwd: Path = ROOT,
                 env: dict | None = None) -> tuple[str, float]:
    """Run a client to its end (with `env` added to the environment); (stdout, CPU seconds it used, children
    included)."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**os.environ, **env} if env else None)
    started = time.monotonic()
    output = []
    for line in process.stdout:
        output.append(line)
        if time.monotonic() - started > timeout:
            process.kill()
            break
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    text = "".join(output)
    if process.returncode not in (0, 1):
        raise RuntimeError(f"{command[:3]} exited {process.returncode}:\n{text[-3000:]}")
    return text, usage.ru_utime + usage.ru_stime


def save(name: str, data: dict) -> Path:
    """Write results/<name>.json (with the machine) and re-render BENCHMARKS.md."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    data = {"machine": machine(), "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), **data}
    path.write_text(json.dumps(data, indent=2) + "\n")
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "render.py")], check=True)
    return path


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
