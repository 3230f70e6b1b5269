"""`python -m flux_async serve`: prints the endpoints when ready, serves, stops cleanly on SIGINT/SIGTERM (no orphan
stub processes, no leaked /dev/shm segments); a server that cannot start exits 3 with the reason."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from flux_async.targets.bls_inputs import bls_inputs

ROOT = Path(__file__).resolve().parents[2]


def triton_processes(marker: str = "") -> set[int]:
    """PIDs of tritonserver and python-backend stub processes with `marker` in their command line: one launcher's
    shm prefix (`TritonServer.shm_prefix`), or `launched_by(pid)` for every server one process started. Only this
    test's, then: the tests running beside it (pytest -n) start servers of their own."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if (b"tritonserver" in cmdline or b"triton_python_backend_stub" in cmdline) and marker.encode() in cmdline:
                pids.add(int(entry.name))
    return pids


def shm_segments(marker: str) -> set[str]:
    """The /dev/shm segments whose names start with `marker` (as triton_processes)."""
    return {p.name for p in Path("/dev/shm").iterdir() if p.name.startswith(marker)}


def launched_by(pid: int) -> str:
    """The marker of every Triton process `pid` started: their shm prefix begins with it (launch/triton_server.py)."""
    return f"flux_async_{pid}_"


def start_serve(*args: str) -> tuple[subprocess.Popen, list[str]]:
    """Start `serve` and read its output until the endpoints are printed (or it exits)."""
    process = subprocess.Popen([sys.executable, "-m", "flux_async", "serve", *args], cwd=ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines = []
    for line in process.stdout:
        lines.append(line.rstrip())
        if line.startswith("Press Ctrl-C"):
            break
    return process, lines


NOOP = ROOT / "tests" / "fixtures" / "noop_repository"
STAND_IN = ROOT / "tests" / "fixtures" / "stand_in_repository"  # a bls answering at once, an image per seed
TUTORIAL = ROOT / "examples" / "triton_tutorial"


def infer_noop(grpc_url: str) -> None:
    client = grpcclient.InferenceServerClient(grpc_url)
    tensor = grpcclient.InferInput("INPUT", [1, 3], "FP32")
    tensor.set_data_from_numpy(np.array([[1, 2, 3]], dtype=np.float32))
    assert client.infer("noop", [tensor]).as_numpy("OUTPUT").tolist() == [[1, 2, 3]]


def infer_bls(grpc_url: str) -> None:
    client = grpcclient.InferenceServerClient(grpc_url)
    result = client.infer("bls", bls_inputs(grpcclient, ["a lighthouse"], seeds=[1], height=64, width=64,
                                            num_inference_steps=1))
    assert result.as_numpy("images").shape == (1, 3, 64, 64)


def frontend_serves(text: str) -> None:
    """The OpenAI and NIM front end `serve --openai-port 0 --nim-port 0` printed answers before the same Triton."""
    import json
    import urllib.request

    openai = re.search(r"OpenAI\s+(http://localhost:\d+)", text).group(1)
    nim = re.search(r"NIM\s+(http://localhost:\d+)", text).group(1)
    for url in (f"{openai}/health", f"{openai}/v1/models", f"{nim}/v1/health/live", f"{nim}/v1/health/ready"):
        with urllib.request.urlopen(url, timeout=30) as response:
            assert response.status == 200, url
    body = json.dumps({"prompt": "a lighthouse", "width": 64, "height": 64, "steps": 1}).encode()
    with urllib.request.urlopen(urllib.request.Request(f"{nim}/v1/infer", body), timeout=120) as response:
        artifact = json.loads(response.read())["artifacts"][0]
        assert response.headers["Server-Timing"].startswith("server_e2e;dur=")
    assert artifact["finishReason"] == "SUCCESS" and isinstance(artifact["seed"], int) and artifact["base64"]


def server_pid(grpc_url: str) -> int:
    """The tritonserver listening on `grpc_url`'s port."""
    flag = f"--grpc-port={grpc_url.rsplit(':', 1)[1]}"
    for pid in triton_processes():
        try:
            if flag in Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0"):
                return pid
        except OSError:  # a process that ended meanwhile
            continue
    raise AssertionError(f"no tritonserver runs with {flag}")


# No FLUX start here (half a minute each): serve's code is the same whatever the repository. SIGINT with the OpenAI/NIM
# front end before a stand-in bls (an image per seed, at once), SIGTERM on the no-op repository; both start in
# seconds. What the FLUX repository adds is asserted where it is served anyway: serve's default repository
# (test_serve_starts_the_flux_repository_by_default), FLUX images from the session server and from the front end before
# it (test_openai_nim), and no FLUX stub or /dev/shm segment left after the embedded run (test_run_scenarios, the one
# FLUX start of its own).
@pytest.mark.parametrize("stop_signal, repository, infer", [(signal.SIGINT, STAND_IN, infer_bls),
                                                          (signal.SIGTERM, NOOP, infer_noop)],
                         ids=["SIGINT-front-end", "SIGTERM-noop"])
def test_serve_prints_endpoints_serves_and_stops_cleanly(tiny_weights, stop_signal, repository, infer):
    from flux_async.contract import ENV_WEIGHTS

    # with the stand-in: the front end, and the tutorial-shaped example (wrapping bls) served beside it
    frontend_args = (["--openai-port", "0", "--nim-port", "0", "--extra-repository", str(TUTORIAL)]
                     if repository == STAND_IN else [])
    process, lines = start_serve("--weights", str(tiny_weights), "--http-port", "0", "--grpc-port", "0",
                                 "--metrics-port", "0", "--model-repository", str(repository), *frontend_args)
    try:
        text = "\n".join(lines)
        assert "Triton is ready" in text, text
        grpc_url = re.search(r"gRPC\s+(\S+)", text).group(1)
        assert re.search(r"HTTP\s+localhost:\d+", text) and re.search(r"metrics\s+http://localhost:\d+/metrics", text)
        infer(grpc_url)
        weights = process_environment(server_pid(grpc_url))[ENV_WEIGHTS]  # where the FLUX models read --weights
        assert weights == str(tiny_weights.resolve())
        if frontend_args:
            frontend_serves(text)
            assert f"beside it {TUTORIAL}" in text
            http_url = re.search(r"HTTP\s+(\S+)", text).group(1)
            with urllib.request.urlopen(f"http://{http_url}/v2/models/text2image/ready", timeout=30) as response:
                assert response.status == 200
    finally:
        process.send_signal(stop_signal)
        rest = process.communicate(timeout=120)[0]
    assert process.returncode == 0, rest
    assert "server stopped" in rest
    assert triton_processes(launched_by(process.pid)) == set(), "stub or server processes outlived serve"
    assert shm_segments(launched_by(process.pid)) == set(), "serve left /dev/shm segments behind"


def test_serve_starts_the_flux_repository_by_default(tmp_path, tiny_weights):
    """Without --model-repository serve runs Triton on triton_models/, the FLUX repository (here a --tritonserver that
    does not exist stops it before any model loads: exit 3, the reason on stderr)."""
    from flux_async.launch.triton_server import DEFAULT_REPOSITORY

    result = subprocess.run([sys.executable, "-m", "flux_async", "serve", "--weights", str(tiny_weights),
                             "--tritonserver", str(tmp_path / "tritonserver"), "--http-port", "0", "--grpc-port", "0",
                             "--metrics-port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert DEFAULT_REPOSITORY.name == "triton_models" and (DEFAULT_REPOSITORY / "bls" / "config.pbtxt").is_file()
    assert f"starting tritonserver (model repository {DEFAULT_REPOSITORY})" in result.stdout, result.stdout
    assert result.returncode == 3, result.stdout + result.stderr
    assert "server failed to start" in result.stderr and "does not exist" in result.stderr


def free_port_block(offsets: list[int]) -> int:
    """A base port whose base + each offset is free on localhost now."""
    import random
    import socket

    for _ in range(200):
        base = random.randrange(20000, 60000)
        try:
            for offset in offsets:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", base + offset))
        except OSError:
            continue
        return base
    raise RuntimeError("no free block of ports")


def process_environment(pid: int) -> dict:
    pairs = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(pair.decode(errors="replace").split("=", 1) for pair in pairs if b"=" in pair)


def test_serve_gpus_runs_one_server_per_gpu_each_seeing_only_its_own(tiny_weights):
    """`serve --gpus 0,1`: two servers on the base ports and base + 10, each with CUDA_VISIBLE_DEVICES set to its GPU
    (and one CUDA pool, device 0 of what it sees); both serve; Ctrl-C stops both and their stubs."""
    base = free_port_block([0, 1, 2, 10, 11, 12])
    process, lines = start_serve("--gpus", "0,1", "--model-repository", str(NOOP), "--weights", str(tiny_weights),
                                 "--http-port", str(base), "--grpc-port", str(base + 1),
                                 "--metrics-port", str(base + 2))
    try:
        text = "\n".join(lines)
        assert "Triton on GPU 0 is ready" in text and "Triton on GPU 1 is ready" in text, text
        grpc_urls = re.findall(r"gRPC\s+(\S+)", text)
        assert grpc_urls == [f"localhost:{base + 1}", f"localhost:{base + 11}"]
        assert f"every server: --url localhost:{base + 1},localhost:{base + 11}" in text
        servers = {}
        for pid in triton_processes(launched_by(process.pid)):
            args = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            port = next((a.split("=")[1] for a in args if a.startswith("--grpc-port=")), None)
            if port:
                servers[int(port)] = (process_environment(pid)["CUDA_VISIBLE_DEVICES"],
                                      [a for a in args if a.startswith("--cuda-memory-pool")])
        pool = "--cuda-memory-pool-byte-size=0:1073741824"
        assert servers == {base + 1: ("0", [pool]), base + 11: ("1", [pool])}
        for url in grpc_urls:
            infer_noop(url)
    finally:
        process.send_signal(signal.SIGINT)
        rest = process.communicate(timeout=120)[0]
    assert process.returncode == 0 and "server stopped" in rest, rest
    assert triton_processes(launched_by(process.pid)) == set(), "a server or stub outlived serve --gpus"
    assert shm_segments(launched_by(process.pid)) == set()


def test_a_fleet_whose_member_cannot_start_stops_the_others_and_names_the_gpu(tiny_weights):
    import socket

    from flux_async.launch.fleet import ServerFleet
    from flux_async.launch.triton_server import ServerConfig, ServerError

    base = free_port_block([0, 1, 2, 10, 11, 12])
    with socket.socket() as taken:  # the second server's gRPC port
        taken.bind(("127.0.0.1", base + 11))
        taken.listen()
        fleet = ServerFleet(["0", "1"], ServerConfig(model_repository=NOOP, weights=str(tiny_weights), http_port=base,
                                                     grpc_port=base + 1, metrics_port=base + 2,
                                                     startup_timeout_s=120))
        with pytest.raises(ServerError, match="the server on GPU 1 did not start") as failure:
            fleet.start()
    assert "the server on GPU 0" not in str(failure.value)
    assert all(server.process is None for server in fleet.servers)
    assert not any(triton_processes(server.shm_prefix) for server in fleet.servers)


def test_serve_rejects_a_bad_gpu_list_or_ports_past_the_top_with_exit_2():
    def serve(*args):
        return subprocess.run([sys.executable, "-m", "flux_async", "serve", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=120)

    result = serve("--gpus", "0,zero")
    assert result.returncode == 2 and "--gpus must be 'all' or comma-separated GPU indices" in result.stderr
    result = serve("--gpus", "0,1", "--grpc-port", "65530")
    assert result.returncode == 2 and "server 1 would listen on 65540" in result.stderr, result.stderr
    assert "at most 65525" in result.stderr
    result = serve("--extra-repository", "tests")
    assert result.returncode == 2 and "--extra-repository tests: not a model repository" in result.stderr
    result = serve("--gpus", "0,1", "--openai-port", "0")
    assert result.returncode == 2 and "before one Triton: not with --gpus" in result.stderr, result.stderr


def test_serve_rejects_bad_speed_settings_and_fp8_without_a_gpu_with_exit_2():
    """The models' switches are checked before the server starts, naming the variable and what it takes."""
    def serve(*args, **env):
        return subprocess.run([sys.executable, "-m", "flux_async", "serve", *args], cwd=ROOT, capture_output=True,
                              text=True, timeout=120, env=os.environ | env)

    result = serve(FLUX_ASYNC_COMPILE="maybe")
    assert result.returncode == 2 and "FLUX_ASYNC_COMPILE (parameter 'compile') must be one of 1/0" in result.stderr
    result = serve(FLUX_ASYNC_WARMUP="1000x1024")
    assert result.returncode == 2 and "FLUX_ASYNC_WARMUP (parameter 'warmup') must be 'off' or sizes" in result.stderr
    result = serve("--precision", "fp8")  # this machine has no GPU
    assert result.returncode == 2 and "--precision fp8: no NVIDIA GPU found" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_serve_exits_3_when_a_model_cannot_load(tmp_path, tiny_weights):
    """A model whose model.py fails to import: exit 3, the reason and the log's tail on stderr."""
    broken = tmp_path / "repository" / "broken" / "1"
    broken.mkdir(parents=True)
    (broken / "model.py").write_text("import flux_async_no_such_module\n")
    (broken.parent / "config.pbtxt").write_text('backend: "python"\nmax_batch_size: 0\n'
                                                'input [{ name: "x" data_type: TYPE_INT32 dims: [1] }]\n'
                                                'output [{ name: "y" data_type: TYPE_INT32 dims: [1] }]\n')
    process, lines = start_serve("--model-repository", str(broken.parent.parent), "--weights", str(tiny_weights),
                                 "--http-port", "0", "--grpc-port", "0", "--metrics-port", "0")
    output = "\n".join(lines) + process.communicate(timeout=300)[0]
    assert process.returncode == 3, output
    assert "server failed to start" in output and "flux_async_no_such_module" in output


def test_serve_rejects_a_missing_weights_folder_with_exit_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "flux_async", "serve", "--weights", str(tmp_path / "nope")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "--weights" in result.stderr and "model_index.json" in result.stderr


def test_stub_preflight_names_a_mismatched_libpython(tmp_path):
    """The stub must load this interpreter's libpython; another build of the same version is caught before start."""
    from flux_async.launch.triton_server import ServerError, bundled_server, check_stub_links, stub_environment

    debian = Path(f"/usr/lib/x86_64-linux-gnu/libpython{sys.version_info.major}.{sys.version_info.minor}.so.1.0")
    stub = bundled_server() / "backends" / "python" / "triton_python_backend_stub"
    check_stub_links(stub, stub_environment())  # the environment serve builds passes
    ours = Path(sysconfig.get_config_var("LIBDIR")) / sysconfig.get_config_var("LDLIBRARY")
    if not debian.exists() or debian.resolve() == ours.resolve():
        pytest.skip(f"no second libpython build at {debian} to mismatch against")
    env = stub_environment({"PATH": os.environ["PATH"]})
    env["LD_LIBRARY_PATH"] = f"{debian.parent}:{env['LD_LIBRARY_PATH']}"
    with pytest.raises(ServerError, match="would load .*libpython"):
        check_stub_links(stub, env)


def test_stub_library_path_exposes_libpython_and_nothing_else_of_its_folder():
    """LIBDIR itself on LD_LIBRARY_PATH would shadow every library beside libpython for torch in the stubs (on the GPU
    image, /usr/lib/x86_64-linux-gnu: attention fell back from cuDNN's kernels). A folder of links to libpython only."""
    from flux_async.launch.triton_server import libpython_dir, stub_environment

    libdir = Path(sysconfig.get_config_var("LIBDIR"))
    first = Path(stub_environment()["LD_LIBRARY_PATH"].split(os.pathsep)[0])
    assert first == Path(libpython_dir()) and first != libdir
    linked = {path.name: path.resolve() for path in first.iterdir()}
    soname = sysconfig.get_config_var("INSTSONAME")
    assert linked[soname] == (libdir / soname).resolve()
    assert set(linked) <= {soname, sysconfig.get_config_var("LDLIBRARY")}
    assert libpython_dir() == str(first)  # the same folder every time, links kept


def test_libpython_links_survive_threads_making_them_at_once(tmp_path, monkeypatch):
    """A fleet starts its servers from threads of one process: each must get the links folder, none the fallback."""
    import threading

    from flux_async.launch.triton_server import libpython_dir

    monkeypatch.setenv("FLUX_ASYNC_CACHE", str(tmp_path))
    for attempt in range(20):
        shutil.rmtree(tmp_path, ignore_errors=True)
        barrier, results = threading.Barrier(8), []

        def make(barrier=barrier, results=results):
            barrier.wait()
            results.append(libpython_dir())

        threads = [threading.Thread(target=make) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(results)) == 1 and Path(results[0]).parent == tmp_path, (attempt, set(results))


async def test_async_context_manager_starts_serves_and_stops(tiny_weights):
    """The Python API: `async with TritonServer(...)` (here on a no-op model, which starts in seconds)."""
    import tritonclient.grpc.aio as grpc_aio

    from flux_async.launch.triton_server import TritonServer
    from flux_async.targets.bls_inputs import make_input

    async with TritonServer(model_repository=ROOT / "tests" / "fixtures" / "noop_repository",
                            weights=str(tiny_weights)) as server:
        assert triton_processes(server.shm_prefix)  # the marker finds it while it runs
        client = grpc_aio.InferenceServerClient(server.grpc_url)
        try:
            assert await client.is_server_ready()
            values = np.arange(4, dtype=np.float32).reshape(1, 4)
            result = await client.infer("noop", [make_input(grpc_aio, "INPUT", values)])
            np.testing.assert_array_equal(result.as_numpy("OUTPUT"), values)
        finally:
            await client.close()
    assert triton_processes(server.shm_prefix) == set()
    assert shm_segments(server.shm_prefix) == set()


def test_a_port_taken_before_triton_binds_it_is_picked_again(tiny_weights, monkeypatch):
    """A free port found, then taken by another process before Triton binds it (servers starting side by side): the
    server starts again on newly picked ports instead of failing."""
    import socket

    from flux_async.launch import triton_server

    blocker = socket.socket()
    blocker.bind(("0.0.0.0", 0))
    blocker.listen()
    taken = blocker.getsockname()[1]
    picks = iter([taken])  # the first pick (the HTTP port) is the taken one
    real = triton_server.free_port
    monkeypatch.setattr(triton_server, "free_port", lambda: next(picks, None) or real())
    try:
        with triton_server.TritonServer(model_repository=NOOP, weights=str(tiny_weights)) as server:
            assert server.http_port != taken and server.is_ready()
    finally:
        blocker.close()
