"""Start and stop a Triton Inference Server: the one bundled in the nvidia-pytriton wheel, or a given binary.

The python backend's stub is an embedded interpreter linked against libpython; it must load the libpython of the
interpreter that owns this environment, find this environment's `python3` on PATH (it runs isolated, so PYTHONPATH
does not reach it), and start in a neutral working directory (docs/triton-from-pypi.md). `TritonServer` does all three.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from flux_async import contract
from flux_async.errors import ServerError
from flux_async.pipeline.weights import cache_dir

# an installed wheel carries the model repository inside the package; a source checkout has it at the top
_PACKAGED_REPOSITORY = Path(__file__).resolve().parents[1] / "triton_models"
DEFAULT_REPOSITORY = (_PACKAGED_REPOSITORY if _PACKAGED_REPOSITORY.is_dir()
                      else Path(__file__).resolve().parents[2] / "triton_models")
sysconfig.get_config_vars()  # filled on first use, which is not thread-safe: a fleet starts its servers from threads


PORT_ATTEMPTS = 3  # starts on newly picked free ports when one was taken meanwhile


def free_port() -> int:
    """A TCP port that is free on localhost right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pytriton_root() -> Path:
    try:
        dist = importlib.metadata.distribution("nvidia-pytriton")
    except importlib.metadata.PackageNotFoundError:
        raise ServerError("nvidia-pytriton is not installed: it carries the tritonserver binary "
                          "(or pass --tritonserver PATH)") from None
    # a PathDistribution locates its files as pathlib paths; str() only satisfies the SimplePath protocol
    return Path(str(dist.locate_file("pytriton/tritonserver")))


def bundled_server() -> Path:
    """A ready server folder (bin/, backends/ with this Python's stub, caches/), copied once into the cache."""
    from filelock import FileLock

    version = importlib.metadata.version("nvidia-pytriton")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    target = cache_dir() / f"tritonserver-{version}-py{python}"
    stub_name = "triton_python_backend_stub"
    if (target / "backends" / "python" / stub_name).is_file():
        return target
    source = _pytriton_root()
    stub = source / "python_backend_stubs" / python / stub_name
    if not stub.is_file():
        known = sorted(p.name for p in (source / "python_backend_stubs").iterdir())
        raise ServerError(f"nvidia-pytriton {version} has no python backend stub for Python {python} "
                          f"(it has {', '.join(known)}): use one of those Python versions")
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if not (target / "backends" / "python" / stub_name).is_file():
            staging = Path(tempfile.mkdtemp(prefix=".tritonserver.", dir=target.parent))
            for part in ("bin", "backends", "caches"):
                shutil.copytree(source / part, staging / part, symlinks=True)
            shutil.copy2(stub, staging / "backends" / "python" / stub_name)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
    return target


def libpython_dir() -> str:
    """A folder holding only links to this interpreter's libpython, for LD_LIBRARY_PATH.

    Its LIBDIR itself would shadow every library in it for the stubs: where that is /usr/lib/x86_64-linux-gnu, torch
    in a stub loaded other CUDA libraries than in-process and its attention fell back from cuDNN's kernels to
    slower ones (BENCHMARKS.md, the GPU section). Falls back to LIBDIR where the links cannot be made.
    """
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    names = {sysconfig.get_config_var(key) for key in ("LDLIBRARY", "INSTSONAME")} - {None, ""}
    sources = [Path(libdir) / name for name in names if (Path(libdir) / name).exists()]
    if not sources:
        return libdir
    digest = hashlib.sha1(str(Path(libdir).resolve()).encode()).hexdigest()[:12]
    target = cache_dir() / f"libpython-{digest}"
    try:
        target.mkdir(parents=True, exist_ok=True)
        for source in sources:
            link = target / source.name
            if not (link.is_symlink() and link.resolve() == source.resolve()):
                temporary = target / f".{source.name}.{uuid.uuid4().hex}"
                temporary.symlink_to(source.resolve())
                temporary.replace(link)  # atomic: parallel sessions, or a fleet's threads, may race here
    except OSError:
        return libdir
    return str(target)


def stub_environment(base: dict | None = None) -> dict:
    """Environment for tritonserver and its stubs: this interpreter's libpython first, this venv's python3 on PATH."""
    env = dict(os.environ if base is None else base)
    libdirs = [libpython_dir()]
    try:
        libs = importlib.metadata.distribution("nvidia-pytriton").locate_file("nvidia_pytriton.libs")
        libdirs.append(str(Path(str(libs))))
    except importlib.metadata.PackageNotFoundError:
        pass
    env["LD_LIBRARY_PATH"] = os.pathsep.join([d for d in libdirs if d] + [p for p in [env.get("LD_LIBRARY_PATH")] if p])
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PYTHONHOME", None)
    return env


def check_stub_links(stub: Path, env: dict) -> None:
    """Fail clearly when the stub would load another libpython than this interpreter's (a different build of the
    same minor version breaks the stdlib's extension modules and torch inside the stub)."""
    if not sysconfig.get_config_var("Py_ENABLE_SHARED"):
        raise ServerError(f"{sys.executable} is a static build of Python: the python backend stub needs a shared "
                          f"libpython{sys.version_info.major}.{sys.version_info.minor}.so; use a shared build "
                          "(e.g. pyenv with PYTHON_CONFIGURE_OPTS=--enable-shared, or uv's managed Python)")
    expected = Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("LDLIBRARY")
    ldd = shutil.which("ldd")
    if ldd is None or not stub.is_file():
        return
    out = subprocess.run([ldd, str(stub)], env=env, capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"(libpython\S+\.so\S*) => (\S+)", out)
    if match is None:
        raise ServerError(f"the python backend stub {stub} does not resolve libpython:\n{out}")
    found = Path(match.group(2))
    if found.resolve() != expected.resolve():
        raise ServerError(f"the python backend stub would load {found}, but this environment's interpreter "
                          f"({sys.executable}) is linked against {expected}: the stub could not import torch or "
                          f"flux_async. Put {expected.parent} first on LD_LIBRARY_PATH.")


_LOAD_FAILURE_HINTS = (
    (re.compile(r"undefined symbol: _?Py"), "the python backend stub loaded a libpython that does not match this "
     "environment's interpreter"),
    (re.compile(r"No module named '?(torch|flux_async|diffusers|transformers)"), "the python backend stub does not "
     "see this environment's packages: its python3 on PATH must be this venv's"),
    (re.compile(r"failed to load '(\w+)'|failed to load model '(\w+)'", re.I), "a model failed to load"),
)


def diagnose(log: str) -> str:
    """The most likely reason a server failed to start, from its log."""
    reasons = [hint for pattern, hint in _LOAD_FAILURE_HINTS if pattern.search(log)]
    return "; ".join(dict.fromkeys(reasons)) or "see the server log"


@dataclass
class ServerConfig:
    """How to run tritonserver. Ports left at 0 are picked free at start."""

    model_repository: Path = DEFAULT_REPOSITORY
    extra_repositories: list[Path] = field(default_factory=list)  # served beside it (e.g. examples/ wrapping bls)
    weights: str | None = None
    http_port: int = 0
    grpc_port: int = 0
    metrics_port: int = 0
    tritonserver: Path | None = None
    model_control_mode: str = "none"
    torch_threads: int = 1
    startup_timeout_s: float = 600.0
    log_verbose: int = 0
    cuda_memory_pool_mb: int = 1024  # per GPU: the python backend moves GPU tensors between models through it
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)


class TritonServer:
    """A tritonserver process: `start()`/`stop()`, or `with` / `async with`. Endpoints: `http_url`, `grpc_url`."""

    def __init__(self, config: ServerConfig | None = None, **overrides):
        self.config = config or ServerConfig(**overrides)
        self.process: subprocess.Popen | None = None
        self.workdir: Path | None = None
        self.shm_prefix = f"flux_async_{os.getpid()}_{uuid.uuid4().hex[:8]}_"
        self.http_port = self.grpc_port = self.metrics_port = 0

    @property
    def http_url(self) -> str:
        return f"localhost:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"localhost:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://localhost:{self.metrics_port}/metrics"

    @property
    def log_path(self) -> Path:
        if self.workdir is None:  # the TypeError `None / str` raised, which log_text() expects
            raise TypeError("the server has no work folder before start()")
        return self.workdir / "tritonserver.log"

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except (OSError, TypeError, AttributeError):
            return ""

    def _command(self, binary: Path, backends: Path) -> list[str]:
        cfg = self.config
        return [str(binary), *(f"--model-repository={Path(folder).resolve()}"
                               for folder in (cfg.model_repository, *cfg.extra_repositories)),
                f"--backend-directory={backends}", f"--http-port={self.http_port}", f"--grpc-port={self.grpc_port}",
                f"--metrics-port={self.metrics_port}", f"--model-control-mode={cfg.model_control_mode}",
                "--allow-cpu-metrics=false", "--allow-gpu-metrics=true", f"--log-verbose={cfg.log_verbose}",
                f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
                "--backend-config=python,shm-default-byte-size=16777216",
                "--backend-config=python,shm-growth-byte-size=67108864",
                *self._cuda_pool_args(),
                *(["--load-model=*"] if cfg.model_control_mode == "explicit" else []), *cfg.extra_args]

    def _cuda_pool_args(self) -> list[str]:
        """One CUDA memory pool per GPU the server sees (its own CUDA_VISIBLE_DEVICES, e.g. a fleet member's). BLS
        tensors on a GPU travel through it (Triton's default, 64 MiB, is smaller than one batch of 1024² images, and
        a tensor that does not fit takes a slower path)."""
        from flux_async.measure.gpu import visible_gpu_count

        size = self.config.cuda_memory_pool_mb * 2**20
        count = visible_gpu_count(self.config.env.get("CUDA_VISIBLE_DEVICES"))
        return [f"--cuda-memory-pool-byte-size={gpu}:{size}" for gpu in range(count)]

    def _locate(self) -> tuple[Path, Path]:
        """(tritonserver binary, backends folder): a given binary uses the backends/ beside its bin/ folder."""
        if self.config.tritonserver:
            binary = Path(self.config.tritonserver).resolve()
            if not binary.is_file():
                raise ServerError(f"--tritonserver {binary} does not exist")
            backends = binary.parent.parent / "backends"
            return binary, backends if backends.is_dir() else bundled_server() / "backends"
        root = bundled_server()
        return root / "bin" / "tritonserver", root / "backends"

    def _environment(self, binary: Path) -> dict:
        env = stub_environment()
        libs = binary.parent.parent / "lib"  # a server tarball carries its libraries there (benchmarks/gpu)
        if libs.is_dir():
            env["LD_LIBRARY_PATH"] = f"{libs}{os.pathsep}{env['LD_LIBRARY_PATH']}"
        env.update({contract.ENV_TORCH_THREADS: str(self.config.torch_threads), **self.config.env})
        return env

    def start(self) -> TritonServer:
        """Start the server and wait until it is ready; raises `ServerError` with the reason and the log's tail."""
        from flux_async.pipeline.weights import resolve_weights

        cfg = self.config
        for repository in map(Path, (cfg.model_repository, *cfg.extra_repositories)):
            if not (repository.is_dir() and any(repository.glob("*/config.pbtxt"))):
                raise ServerError(f"model repository {repository} has no model folders with a config.pbtxt")
        binary, backends = self._locate()
        env = self._environment(binary)
        env[contract.ENV_WEIGHTS] = resolve_weights(cfg.weights).describe()  # builds the tiny default once, here
        check_stub_links(backends / "python" / "triton_python_backend_stub", env)
        picked = not (cfg.http_port and cfg.grpc_port and cfg.metrics_port)
        for attempt in range(1, PORT_ATTEMPTS + 1):
            self.http_port = cfg.http_port or free_port()
            self.grpc_port = cfg.grpc_port or free_port()
            self.metrics_port = cfg.metrics_port or free_port()
            self.workdir = Path(tempfile.mkdtemp(prefix="flux_async_server_"))
            with open(self.log_path, "wb") as log:
                self.process = subprocess.Popen(self._command(binary, backends), cwd=self.workdir, env=env,
                                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                self._wait_ready(cfg.startup_timeout_s)
                return self
            except ServerError as exc:
                self.stop()
                # a port found free was taken before Triton bound it (another process starting beside this one):
                # pick new ones
                if not (picked and "already in use" in str(exc) and attempt < PORT_ATTEMPTS):
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        url = f"http://localhost:{self.http_port}/v2/health/ready"
        while time.monotonic() < deadline:
            assert self.process is not None  # start() launched it; stop() has not run
            if self.process.poll() is not None:
                log = self.log_text()
                raise ServerError(f"tritonserver exited with code {self.process.returncode} before it was ready: "
                                  f"{diagnose(log)}.\n--- last lines of {self.log_path} ---\n"
                                  + "\n".join(log.splitlines()[-40:]))
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.25)
        raise ServerError(f"tritonserver was not ready after {timeout_s:.0f} s; log: {self.log_path}")

    def is_ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://localhost:{self.http_port}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGINT (Triton unloads its models), then SIGKILL to the whole process group; remove leftover shm."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                pass
        self._reap(process)

    def kill(self) -> None:
        """Kill the server and its stubs at once (SIGKILL to the process group), as a crash would; ports are kept."""
        process, self.process = self.process, None
        self._reap(process)

    def _reap(self, process: subprocess.Popen | None) -> None:
        """SIGKILL the process group (stubs are children: none may outlive the server); remove leftover shm."""
        if process is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            process.wait()
        for leftover in Path("/dev/shm").glob(self.shm_prefix + "*"):
            leftover.unlink(missing_ok=True)

    def restart(self) -> TritonServer:
        """Start again on the same ports (after `kill` or `stop`)."""
        self.config.http_port, self.config.grpc_port = self.http_port, self.grpc_port
        self.config.metrics_port = self.metrics_port
        return self.start()

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    async def __aenter__(self) -> TritonServer:
        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(self, *exc) -> None:
        await asyncio.to_thread(self.stop)
