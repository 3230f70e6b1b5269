"""A real multi-node Ray cluster on this machine, for tests: `LocalRayCluster`.

    with LocalRayCluster(workers=2) as cluster:          # head (0 CPUs) + 2 worker nodes, 1 CPU each
        with cluster.connect():                           # ray.init(address=cluster.address) ... ray.shutdown()
            ...                                           # actors, placement groups, tasks
        cluster.kill_node(1)                              # node 1 vanishes, as a lost host would
        with cluster.client():                            # ray.init(cluster.client_address): a ray:// client
            ...

Every node is its own `ray start --block` process (own process session, own --temp-dir, its own explicit ports),
so one node can be killed without touching the others, and two clusters (or somebody's `ray start` on the default
ports) do not collide. Node i (0 = head) carries the custom resource `flux_node_<i>: 1` (`node_resource(i)`), so a
test can place work on a given node (`.options(resources={node_resource(1): 1})`) and tell nodes apart.

Measured on the 2-core / 24 GiB development machine, Ray 2.60.0, Python 3.11, plain `ray[client]` (no
ray[default]: `ray start`, placement groups, async actors and the `ray://` client all work without it; the dashboard
and agents start in their minimal mode):

- Start: head + 2 workers 9.5-17 s, with the machine's load (head 5-10 s, then both workers together ~7 s;
  starting the workers as soon as the GCS listens gained nothing: the start-up is CPU-bound, a dozen Python
  processes importing Ray on 2 cores). One more node (`add_node`) 5-8 s. Two clusters side by side work.
  `stop()` 0.2-0.4 s. `connect()` (ray.init to the running cluster) ~0.05 s, ray.shutdown ~0.3 s; a `ray://`
  connection 4-6 s (the head forks a Python "specific server" per client, ~100 MB, which stays ~30 s after the
  client leaves).
- Memory (PSS): head ~380 MiB (GCS, raylet, its two agents, the client proxy, the minimal dashboard), an idle
  worker node ~200 MiB, ~250 MiB with one actor; each node's object store is capped at 200 MB
  (--object-store-memory; /dev/shm is used) and its logical memory resource at 1 GiB (--memory).
- Token authentication. Ray 2.60 turns token auth on for a new local cluster started by `ray.init()`, and
  `ray start --head` turns it on when it finds a token (~/.ray/auth_token); `ray start --address` (a worker node)
  and `ray.init(address=...)` follow RAY_AUTH_MODE only, so a mix fails. Every process here, the driver included,
  gets RAY_AUTH_MODE=token explicitly. The token comes from (Ray's C++ AuthenticationTokenLoader, in this order)
  RAY_AUTH_TOKEN (the value), RAY_AUTH_TOKEN_PATH (a file), ~/.ray/auth_token. Each LocalRayCluster makes its own
  (`secrets.token_hex(32)`, as `ray get-auth-token --generate` does) and passes it as RAY_AUTH_TOKEN: nothing in
  ~/.ray is read or written. The driver process caches the mode (RayConfig) and the token the first time it uses
  them; `connect()` / `client()` set the variables and refresh both caches (so one process can talk to several
  clusters in turn), `stop()` puts the variables back. A process with another cluster's token gets
  ray.exceptions.AuthenticationError ("InvalidAuthToken: Authentication token is missing or incorrect").
- Addresses: every node runs on 127.0.0.2 (--node-ip-address), so no Ray traffic leaves the loopback. Not
  127.0.0.1: `ray start` and `ray.init` replace 127.0.0.1/localhost/::1 with the machine's routable address
  (ray._private.services.resolve_ip_for_localhost); `connect()` passes `_node_ip_address` to match.
- Ports, all chosen free here and passed explicitly: the GCS (--port) and the client server
  (--ray-client-server-port) on the head; per node --node-manager-port, --object-manager-port,
  --dashboard-agent-listen-port, --dashboard-agent-grpc-port, --metrics-export-port, --runtime-env-agent-port and a
  block of WORKER_PORTS for --min/--max-worker-port, taken below the kernel's ephemeral range and outside
  23000-23999. That range is Ray's client proxy's, for one "specific server" per ray:// connection; it is fixed
  (ray/util/client/server/proxier.py) and those servers bind with gRPC's SO_REUSEPORT, so two clusters on one
  machine taking ray:// connections at the same moment can cross: seen here as the client failing with
  "UNAUTHENTICATED: Invalid or missing authentication token" after 30 s (the other cluster's token; one token per
  cluster turns that into an error rather than a client silently driving the other cluster). The dashboard is off
  (--include-dashboard=false), and so are the autoscaler monitor (--no-monitor) and the log monitor
  (--include-log-monitor=false: workers' prints are not streamed to drivers, connect() passes log_to_driver=False).
- A ray:// connection failed once in ~45 with "Starting Ray client server failed" after a 30 s wait: the proxy's
  forked child died at once with gRPC's "Check failed: next_worker->state == KICKED" (ray issue 63202, ~7% there).
  The head runs with GRPC_ENABLE_FORK_SUPPORT=false (the child execs at once; it needs no gRPC fork handlers):
  30 connections in a row succeeded so, which is not proof at that rate.
- Killing one node: `ray stop` stops every Ray process of the machine, and not all of a node's processes stay in
  the node's process group (the raylet puts each worker in a group of its own), so `kill_node` reads the process
  tree under that node's `ray start --block` from /proc first and then SIGKILLs it (and the group): the raylet, its
  workers and agents go at once, as with a lost host (except that connections are refused, not left hanging). The
  GCS declares the node dead through its health checks: after 15.0 s with Ray's defaults (3 s period, 5 misses),
  after ~1.3 s with HEALTH_CHECK (set as RAY_<name> variables on every node; `health_check={}` gives Ray's
  defaults). A call in flight on an actor of that node fails after ~1.5 s with ActorUnavailableError ("Socket
  closed ... may or may not have been executed"; with HEALTH_CHECK it is ActorDiedError when the GCS's verdict
  comes first), a new call before the verdict with ActorUnavailableError, and every call after it at once with
  ActorDiedError ("The actor died because its node has died"); all are RayActorErrors.
- If the process holding the cluster dies without stop() (SIGKILL), each node's watchdog (a tiny Python process
  reading a pipe from it) kills the node's process group; the workers, in groups of their own, exit with their
  raylet. Without that, the raylets' agents (ray::DashboardAgent, ray::RuntimeEnvAgent) outlived everything else
  for minutes.
- Async actors run their coroutines on an event loop in a thread of their own ("AsyncIO Thread: default"; uvloop's
  loop where uvloop is installed), not the main thread, so `loop.add_signal_handler` raises there (ValueError from
  uvloop, RuntimeError from asyncio): code like flux_async.run.runner.stop_on_signals must not run in an actor.
- The `ray://` client cannot call generator methods as streaming generators (RuntimeError "Streaming actor methods
  (num_returns="streaming") are not currently supported when using Ray Client"; without num_returns, an
  AttributeError); num_returns="dynamic" works there for sync generators. A driver (`connect()`) can.
- Classes and functions sent to the cluster must be importable by the workers, or registered with
  `ray.cloudpickle.register_pickle_by_value(module)`: pytest imports test files as top-level modules that the
  workers cannot import. flux_async itself is importable (the workers run this interpreter).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WORKER_PORTS = 20  # ports per node for its worker processes (--min-worker-port .. --max-worker-port)
# RayConfig entries (as RAY_<name> variables) for faster node-death detection than Ray's 3 s x 5 default
HEALTH_CHECK = {"health_check_initial_delay_ms": 1000, "health_check_period_ms": 500,
                "health_check_timeout_ms": 1000, "health_check_failure_threshold": 3}
# a loopback address, but not 127.0.0.1 / localhost / ::1, which `ray start --node-ip-address` and `ray.init`
# replace with the machine's routable address (ray._private.services.resolve_ip_for_localhost)
DEFAULT_HOST = "127.0.0.2"
_CLIENT_PROXY_PORTS = range(23000, 24000)  # ray.util.client.server.proxier's specific-server ports


# run as `python -c _WATCHDOG PGID` with a pipe from this process as stdin
_WATCHDOG = """import os, signal, sys
sys.stdin.buffer.read()
try:
    os.killpg(int(sys.argv[1]), signal.SIGKILL)
except OSError:
    pass
"""


def node_resource(index: int) -> str:
    """The custom resource (amount 1) that node `index` carries (0 is the head)."""
    return f"flux_node_{index}"


class RayClusterError(RuntimeError):
    """The local cluster did not start, a node did not come up or go down in time."""


@dataclass
class RayNode:
    """One `ray start --block` of the cluster."""

    index: int
    temp_dir: Path
    ports: dict[str, int]
    cpus: int
    process: subprocess.Popen | None = None
    watchdog: subprocess.Popen | None = None
    node_id: str | None = None  # hex, once the GCS has registered the node
    killed: bool = False
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.temp_dir.parent / f"node{self.index}.log"

    @property
    def head(self) -> bool:
        return self.index == 0

    @property
    def resource(self) -> str:
        return node_resource(self.index)

    def pids(self) -> list[int]:
        """The node's processes now: its `ray start` and every process below it (raylet, agents, workers)."""
        if self.process is None or self.process.poll() is not None:
            return []
        return _descendants(self.process.pid)


class LocalRayCluster:
    """A head node (0 CPUs: it schedules, it does not run work) plus `workers` worker nodes of
    `cpus_per_worker` CPUs, on `host` (127.0.0.2), all as separate processes of this machine.

    `start()` (or `with`) brings it up and waits for every node; `stop()` tears everything down, leaving no
    process behind, also when a test failed. `address` is the GCS address for `ray.init(address=...)`;
    `client_address` the `ray://` one. `connect()` / `client()` are context managers that init and shut down a
    driver in this process with the cluster's authentication. `add_node()` adds a worker node; `kill_node(i)`
    makes node i disappear (raylet and workers killed) and waits until the GCS reports it dead.
    """

    def __init__(self, workers: int = 2, cpus_per_worker: int = 1, *,
                 object_store_memory: int = 200 * 1024 * 1024, memory: int | None = 1024 ** 3,
                 root: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None,
                 health_check: dict[str, int] | None = None, startup_timeout: float = 60.0,
                 host: str = DEFAULT_HOST) -> None:
        self.host = host
        self.initial_workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.object_store_memory = object_store_memory
        self.memory = memory
        self.startup_timeout = startup_timeout
        self.token = secrets.token_hex(32)
        self._root_given = root is not None
        self._root_arg = root
        self.root: Path | None = None
        self.nodes: list[RayNode] = []
        self.gcs_port = 0
        self.client_port = 0
        self._reserved: set[int] = set()
        self._extra_env = dict(env or {})
        self._health_check = HEALTH_CHECK if health_check is None else health_check
        self._saved_env: dict[str, str | None] | None = None
        self.startup_s: float | None = None  # how long start() took

    # ---------------------------------------------------------------- addresses and environment

    @property
    def address(self) -> str:
        """The GCS address, `HOST:PORT`, for `ray.init(address=...)` and `ray start --address`."""
        return f"{self.host}:{self.gcs_port}"

    @property
    def client_address(self) -> str:
        """`ray://HOST:PORT`: the head's Ray client server."""
        return f"ray://{self.host}:{self.client_port}"

    @property
    def auth_env(self) -> dict[str, str]:
        """What a process needs to talk to this cluster: token auth on, this cluster's token."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}

    @property
    def env(self) -> dict[str, str]:
        """The environment of every node process: this process's, less any Ray address or token source it had,
        plus auth_env, no usage stats, the health-check settings and what `env=` gave."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_TOKEN", "RAY_AUTH_MODE")}
        env.update(self.auth_env)
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        # under `uv run` (the tests), Ray would start workers and the client server's drivers with `uv run` in a
        # working_dir that a ray:// driver cannot ship; the nodes run this interpreter as it is
        env["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
        env.update({f"RAY_{name}": str(value) for name, value in self._health_check.items()})
        env.update(self._extra_env)
        return env

    # ---------------------------------------------------------------- lifecycle

    def __enter__(self) -> LocalRayCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalRayCluster:
        """Start the head, then the worker nodes (all at once), and wait until the GCS has every one alive."""
        if self.root is not None:
            raise RayClusterError("this LocalRayCluster was started already")
        if importlib.util.find_spec("ray") is None:
            raise RayClusterError("LocalRayCluster needs Ray: pip install 'flux_async[cluster]'")
        started = time.monotonic()
        # short: Ray's unix sockets live under <temp-dir>/session_<date>_<pid>/sockets/ (108 bytes at most)
        if self._root_arg is not None:
            self.root = Path(self._root_arg)
            self.root.mkdir(parents=True, exist_ok=True)
        else:
            self.root = Path(tempfile.mkdtemp(prefix="fxray-", dir="/tmp"))
        self.gcs_port, self.client_port = self._free_ports(2)
        head = self._new_node(cpus=0)
        self._launch(head)
        self._wait(lambda: self._alive_ids(want=[head]), "the head node to register", self.startup_timeout)
        for _ in range(self.initial_workers):
            self._launch(self._new_node(cpus=self.cpus_per_worker))
        self.wait_for_nodes(len(self.nodes), self.startup_timeout)
        self.startup_s = time.monotonic() - started
        return self

    def add_node(self, cpus: int | None = None, wait: bool = True, timeout: float | None = None) -> RayNode:
        """Start one more worker node (index len(nodes)); with `wait`, return once the GCS has it alive."""
        if self.root is None:
            raise RayClusterError("start() the cluster first")
        node = self._new_node(cpus=self.cpus_per_worker if cpus is None else cpus)
        self._launch(node)
        if wait:
            self._wait(lambda: self._alive_ids(want=[node]), f"node {node.index} to register",
                       self.startup_timeout if timeout is None else timeout)
        return node

    def kill_node(self, index: int, wait: bool = True, timeout: float = 30.0) -> float:
        """SIGKILL node `index`'s whole process tree (its `ray start`, raylet, workers, agents) — a lost host, as
        the rest of the cluster sees it. With `wait`, return once the GCS reports the node dead; returns the
        seconds that took (0.0 without `wait`)."""
        node = self.nodes[index]
        if node.head:
            raise RayClusterError("kill_node(0) would kill the head (GCS); use stop()")
        if node.node_id is None:
            self._alive_ids(want=[node])
        started = time.monotonic()
        self._kill_tree(node)
        if not wait or node.node_id is None:
            return 0.0
        self._wait(lambda: node.node_id not in self.alive_node_ids(), f"the GCS to report node {index} dead",
                   timeout)
        return time.monotonic() - started

    def stop(self) -> None:
        """Kill every node's processes (workers first, the head last) and remove the cluster's files; leaves
        no process behind. Safe to call twice, or after a failed start."""
        for node in reversed(self.nodes):
            if not node.killed:
                self._kill_tree(node)
        for node in self.nodes:
            if node.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    node.process.wait(timeout=10)
        if self.root is not None and not self._root_given:
            shutil.rmtree(self.root, ignore_errors=True)
        self._restore_auth()

    # ---------------------------------------------------------------- state

    def wait_for_nodes(self, n: int, timeout: float = 60.0) -> list[str]:
        """Wait until the GCS reports `n` nodes alive (the head counts); return their ids (hex)."""
        alive: list[str] = []

        def enough() -> bool:
            nonlocal alive
            alive = self.alive_node_ids()
            return len(alive) >= n

        self._wait(enough, f"{n} alive nodes", timeout)
        self._alive_ids(want=[node for node in self.nodes if not node.killed])
        return alive

    def alive_node_ids(self) -> list[str]:
        """Ids (hex) of the nodes the GCS reports alive."""
        return [info["node_id"] for info in self.node_infos() if info["alive"]]

    def node_infos(self) -> list[dict[str, Any]]:
        """What the GCS knows of every node, alive or dead: node_id (hex), alive, temp_dir, resources, is_head."""
        from ray._raylet import GcsClient  # type: ignore[attr-defined]  # not in ray/_raylet.pyi
        from ray.core.generated.gcs_pb2 import GcsNodeInfo  # type: ignore[attr-defined]  # generated, untyped

        self._apply_auth()
        reply = GcsClient(address=self.address).get_all_node_info(timeout=5)
        infos = []
        for node_id, info in reply.items():
            infos.append({"node_id": node_id.hex(), "alive": info.state == GcsNodeInfo.GcsNodeState.ALIVE,
                          "temp_dir": info.temp_dir,
                          "resources": dict(info.resources_total), "is_head": info.is_head_node})
        return infos

    def node_id(self, index: int) -> str:
        """Node `index`'s id (hex), as `ray.get_runtime_context().get_node_id()` gives it inside that node."""
        node = self.nodes[index]
        if node.node_id is None:
            self._alive_ids(want=[node])
        if node.node_id is None:
            raise RayClusterError(f"node {index} has not registered with the GCS")
        return node.node_id

    # ---------------------------------------------------------------- drivers in this process

    @contextlib.contextmanager
    def connect(self, **init_kwargs: Any) -> Iterator[Any]:
        """`ray.init(address=self.address, **init_kwargs)` in this process for the block, `ray.shutdown()` after."""
        import ray

        self._apply_auth()
        init_kwargs.setdefault("log_to_driver", False)
        # Ray would take the driver's address from the route to the GCS: 127.0.0.1, which no node has
        init_kwargs.setdefault("_node_ip_address", self.host)
        with _keeping_sigterm_handler():
            context = ray.init(address=self.address, **init_kwargs)
            try:
                yield context
            finally:
                ray.shutdown()

    @contextlib.contextmanager
    def client(self, **init_kwargs: Any) -> Iterator[Any]:
        """A `ray://` client connection for the block (`ray.init(self.client_address)`), disconnected after."""
        import ray

        self._apply_auth()
        with _keeping_sigterm_handler():
            context = ray.init(self.client_address, **init_kwargs)
            try:
                yield context
            finally:
                context.disconnect()

    def _apply_auth(self) -> None:
        """Give this process the cluster's auth variables and make Ray forget the mode and token it cached."""
        if self._saved_env is None:
            self._saved_env = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH",
                                                              "RAY_ENABLE_UV_RUN_RUNTIME_ENV")}
        os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
        os.environ.update(self.auth_env)
        # a driver under `uv run` (pytest through the README's command) would otherwise ship this checkout as the
        # job's working_dir and start every worker with `uv run` there: a project build and an environment sync per
        # worker, which outlasts the tests' timeouts
        os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
        from ray._private import ray_constants  # read once, when Ray is imported: this process may have imported it

        ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False
        # both are in the compiled module, not in the type stub Ray ships for it (ray/_raylet.pyi)
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()

    def _restore_auth(self) -> None:
        """Put this process's RAY_AUTH_* variables back as they were before `_apply_auth`."""
        if self._saved_env is None:
            return
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env = None
        if "ray._raylet" in sys.modules:
            from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()

    # ---------------------------------------------------------------- internals

    def _new_node(self, cpus: int) -> RayNode:
        assert self.root is not None
        index = len(self.nodes)
        ports = dict(zip(("node_manager", "object_manager", "agent_listen", "agent_grpc", "metrics_export",
                          "runtime_env_agent"), self._free_ports(6)))
        ports["min_worker"] = self._free_port_block(WORKER_PORTS)
        ports["max_worker"] = ports["min_worker"] + WORKER_PORTS - 1
        node = RayNode(index=index, temp_dir=self.root / f"n{index}", ports=ports, cpus=cpus)
        self.nodes.append(node)
        return node

    def _command(self, node: RayNode) -> list[str]:
        p = node.ports
        resources = json.dumps({node.resource: 1})
        command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--block", "--disable-usage-stats",
                   f"--node-ip-address={self.host}", f"--temp-dir={node.temp_dir}", f"--num-cpus={node.cpus}",
                   "--num-gpus=0", f"--resources={resources}",
                   f"--object-store-memory={self.object_store_memory}",
                   f"--node-manager-port={p['node_manager']}", f"--object-manager-port={p['object_manager']}",
                   f"--min-worker-port={p['min_worker']}", f"--max-worker-port={p['max_worker']}",
                   f"--dashboard-agent-listen-port={p['agent_listen']}",
                   f"--dashboard-agent-grpc-port={p['agent_grpc']}", f"--metrics-export-port={p['metrics_export']}",
                   f"--runtime-env-agent-port={p['runtime_env_agent']}", "--include-log-monitor=false"]
        if self.memory is not None:
            command.append(f"--memory={self.memory}")
        if node.head:
            command += ["--head", f"--port={self.gcs_port}", f"--ray-client-server-port={self.client_port}",
                        "--include-dashboard=false", "--no-monitor"]
        else:
            command.append(f"--address={self.address}")
        return command

    def _launch(self, node: RayNode) -> None:
        node.temp_dir.mkdir(parents=True, exist_ok=True)
        env = self.env
        if node.head:
            # the head's Ray client proxy forks a server per `ray://` connection from a process that is busy in
            # gRPC; with gRPC's fork support on (grpcio's default) the child intermittently dies at once (ray
            # issue 63202: "Check failed: next_worker->state == KICKED", then the client waits 30 s and fails
            # with "Starting Ray client server failed"). The child execs straight away and needs none of it
            env.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
        with open(node.log, "ab") as log:
            # its own session: the node's processes can be signalled as a group, apart from this process's
            node.process = subprocess.Popen(self._command(node), env=env, stdin=subprocess.DEVNULL,
                                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        # if this process dies without stop() (killed by CI, say), the watchdog reads the end of its stdin and
        # kills the node's group: `ray start`, raylet, agents (which outlive a dead raylet: seen for minutes)
        node.watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(node.process.pid)],
                                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, start_new_session=True)

    def _alive_ids(self, want: list[RayNode]) -> bool:
        """Fill in the node ids of `want` from the GCS (matched by temp dir); True when all of them are alive."""
        for node in want:
            if node.process is not None and node.process.poll() is not None and not node.killed:
                raise RayClusterError(f"node {node.index}'s `ray start` exited with {node.process.returncode}:\n"
                                      + _tail(node.log))
        try:
            infos = self.node_infos()
        except Exception:  # the GCS is not up yet
            return False
        by_dir = {info["temp_dir"]: info for info in infos if info["alive"]}
        for node in want:
            info = by_dir.get(str(node.temp_dir))
            if info is None:
                return False
            node.node_id = info["node_id"]
        return True

    def _wait(self, condition: Any, what: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- node {n.index} ---\n{_tail(n.log)}" for n in self.nodes)
                raise RayClusterError(f"timed out after {timeout:.0f} s waiting for {what}\n{logs}")
            time.sleep(0.1)

    def _kill_tree(self, node: RayNode) -> None:
        node.killed = True
        if node.watchdog is not None:
            node.watchdog.kill()  # not needed any more, and it must not signal the group's id once that is gone
            node.watchdog.wait()
            if node.watchdog.stdin is not None:
                node.watchdog.stdin.close()
        if node.process is None:
            return
        pids = _descendants(node.process.pid)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(node.process.pid, signal.SIGKILL)  # the session's leader's pid is its group id
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.process.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(process_running(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.05)

    def _free_ports(self, n: int) -> list[int]:
        """`n` distinct TCP ports free now on every address (held open together so that they differ)."""
        sockets: list[socket.socket] = []
        try:
            while len(sockets) < n:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind(("0.0.0.0", 0))
                port = s.getsockname()[1]
                if port in self._reserved or port in _CLIENT_PROXY_PORTS:
                    s.close()
                    continue
                sockets.append(s)
            ports = [s.getsockname()[1] for s in sockets]
        finally:
            for s in sockets:
                s.close()
        self._reserved.update(ports)
        return ports

    def _free_port_block(self, size: int) -> int:
        """The first of `size` consecutive free ports below the ephemeral range, outside the client proxy's."""
        low = _ephemeral_range()[0]
        rng = secrets.SystemRandom()
        for _ in range(200):
            base = rng.randrange(10000, low - size)
            block = range(base, base + size)
            if any(p in self._reserved or p in _CLIENT_PROXY_PORTS for p in block):
                continue
            if all(_bindable(p) for p in block):
                self._reserved.update(block)
                return base
        raise RayClusterError(f"found no {size} consecutive free ports")


@contextlib.contextmanager
def _keeping_sigterm_handler() -> Iterator[None]:
    """ray.init in the main thread makes SIGTERM raise SystemExit and ray.shutdown leaves it so: put back the
    handler this process had (pytest's, say) when the driver goes."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGTERM) if main else None
    try:
        yield
    finally:
        if main and previous is not None:  # None: a handler not set from Python, which cannot be put back
            signal.signal(signal.SIGTERM, previous)


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def _children() -> dict[int, list[int]]:
    """parent pid -> child pids, from /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command in (...) may hold spaces
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    tree = _children()
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def process_running(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
