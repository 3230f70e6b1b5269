"""Command line: argument parsing and exit codes only (docs/cli.md).

Exit codes: 0 success · 1 a threshold, verification or run-time failure · 2 bad scenario or usage · 3 target
unreachable or server failed to start. Commands raise a FluxAsyncError (flux_async.errors) for anything but a
finished run; `main` alone turns it into a message and its exit code.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from flux_async import contract
from flux_async.errors import (
    EXIT_FAILED,
    EXIT_OK,
    FluxAsyncError,
    InvalidTarget,
    ScenarioError,
    ServerError,
    Unavailable,
    UsageError,
    WorkersFailed,
)
from flux_async.extras import require_server_extra


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be in [0, 65535] (0 = pick a free port), got {value}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _milliseconds(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 10_000:
        raise argparse.ArgumentTypeError(f"must be in [0, 10000] ms, got {value:g}")
    return value


PROTOCOL_CHOICES = ("grpc", "grpc-stream", "http", "openai-images", "nim")  # scenario.config.PROTOCOLS (a test
# keeps them equal; the CLI does not import the scenario layer to parse its arguments)


def _size(text: str) -> tuple[int, int]:
    """'WIDTHxHEIGHT' (OpenAI's order) → (height, width)."""
    width, _, height = text.partition("x")
    if not (height.isdigit() and width.isdigit()) or int(height) < 1 or int(width) < 1:
        raise argparse.ArgumentTypeError(f"must be WIDTHxHEIGHT such as 512x256, got {text!r}")
    return int(height), int(width)


def _worker(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    if not (index.isdigit() and count.isdigit() and int(index) < int(count)):
        raise argparse.ArgumentTypeError(f"must be INDEX/COUNT with INDEX < COUNT, got {text!r}")
    return int(index), int(count)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m flux_async",
                                     description="Stress and concurrency tester for FLUX.1 on Triton.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = commands.add_parser("serve", help="run a Triton server with the FLUX model repository until Ctrl-C")
    serve.add_argument("--model-repository", type=Path, default=None,
                       help="model repository (default: this checkout's triton_models/)")
    serve.add_argument("--extra-repository", type=Path, action="append", default=[], metavar="DIR",
                       help="another model repository served beside it, e.g. examples/triton_tutorial (a model "
                            "wrapping bls in your deployment's shape); repeat for several")
    serve.add_argument("--weights", default=None,
                       help="FluxPipeline folder, or preset:flux1-schnell / preset:flux1-dev "
                            "(default: the tiny pipeline, built on first use into the cache)")
    serve.add_argument("--http-port", type=_port, default=8000, help="HTTP port (default 8000; 0 = free port)")
    serve.add_argument("--grpc-port", type=_port, default=8001, help="gRPC port (default 8001; 0 = free port)")
    serve.add_argument("--metrics-port", type=_port, default=8002, help="metrics port (default 8002; 0 = free port)")
    serve.add_argument("--tritonserver", type=Path, default=None,
                       help="tritonserver binary to use instead of the one bundled in nvidia-pytriton")
    serve.add_argument("--model-control-mode", choices=("none", "explicit"), default="none",
                       help="explicit: models can be unloaded/loaded through the model-control API")
    serve.add_argument("--torch-threads", type=_positive, default=1, help="torch threads per model process")
    serve.add_argument("--startup-timeout", type=float, default=600.0, help="seconds to wait for readiness")
    serve.add_argument("--cuda-memory-pool-mb", type=_positive, default=1024,
                       help="Triton's CUDA memory pool per GPU, through which BLS tensors travel (default 1024)")
    serve.add_argument("--precision", choices=("auto", "fp8"), default="auto",
                       help="auto: every stage in the compute dtype (bfloat16 on a GPU, float32 on a CPU); fp8: the "
                            "transformer's block linears in float8 through torchao (the fp8 extra; a GPU of compute "
                            "capability 8.9+). The speed switches (compile, channels_last, fused QKV): docs/speed.md")
    serve.add_argument("--gpus", default=None, metavar="LIST",
                       help="one server per GPU, each seeing only its own: 'all' or indices such as 0,1; server i "
                            "listens on each port + 10*i (default: one server seeing every GPU)")
    serve.add_argument("--openai-port", type=_port, default=None,
                       help="also serve the OpenAI Images API (POST /v1/images/generations) before Triton's bls on "
                            "this port (0 = free port; default off)")
    serve.add_argument("--nim-port", type=_port, default=None,
                       help="also serve NVIDIA NIM's FLUX API (POST /v1/infer) before Triton's bls on this port "
                            "(0 = free port; default off)")
    serve.add_argument("--frontend-max-batch", type=_positive, default=4,
                       help="front end: most prompts combined into one bls request (default 4)")
    serve.add_argument("--frontend-batch-window-ms", type=_milliseconds, default=10.0,
                       help="front end: how long a request waits for others to share its bls request (default 10)")

    run = commands.add_parser("run", help="replay a YAML scenario against Triton and report")
    run.add_argument("scenario", type=Path)
    run.add_argument("--url", default=None, help="host:port or grpc://, grpcs://, http://, https:// URL (several: "
                                                 "comma-separated); none anywhere: an embedded server on tiny weights")
    run.add_argument("--protocol", choices=PROTOCOL_CHOICES, default=None,
                     help="override the scenario's protocol (openai-images, nim: an HTTP JSON front end's API)")
    run.add_argument("--model", default=None, help="model name (default: bls, or bls_stream for grpc-stream; "
                                                   "openai-images and nim send one only when given)")
    run.add_argument("--report", type=Path, default=None, help="write the JSON report here")
    run.add_argument("--hlog", type=Path, default=None, help="write an HdrHistogram interval log here")
    run.add_argument("--plot", type=Path, default=None,
                     help="write a PNG: latency over time, percentile spectrum, throughput, GPU memory")
    run.add_argument("--html", type=Path, default=None,
                     help="write a self-contained HTML report (charts, per-stage times, mismatch images)")
    run.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                     help="cap every phase at this many seconds (a quick run of a long scenario)")
    run.add_argument("--weights", default=None, help="weights for the embedded server (default: the tiny pipeline)")
    run.add_argument("--model-repository", type=Path, default=None,
                     help="model repository for the embedded server (default: triton_models/)")
    run.add_argument("--metrics-url", default=None,
                     help="Triton's Prometheus endpoint to scrape per interval (default: the embedded server's)")
    run.add_argument("--no-progress", action="store_true", help="no live progress display")
    run.add_argument("--no-verify", action="store_true", help="do not check images against their single runs")
    run.add_argument("--allow-faults", action="store_true",
                     help="run the scenario's faults (they unload models, slow or kill the server)")
    run.add_argument("--control-url", default=None,
                     help="Triton's HTTP endpoint for model control (faults), when the target is gRPC")
    run.add_argument("--workers", type=_positive, default=1,
                     help="load-generator processes sharing the load; their histograms merge exactly")
    run.add_argument("--worker", type=_worker, default=None, help=argparse.SUPPRESS)  # i/N: set by --workers
    run.add_argument("--cluster", default=None, metavar="ADDRESS",
                     help="run the load from agents on a Ray cluster: ray://HOST:10001 (client) or a head's "
                          "HOST:PORT (needs flux_async[cluster]; README: Beyond one machine)")
    run.add_argument("--agents", type=_positive, default=None,
                     help="with --cluster: how many load-generator agents (spread over the nodes)")
    run.add_argument("--place-timeout", type=float, default=60.0, metavar="SECONDS",
                     help="with --cluster: how long the cluster may take to place the agents (default 60)")
    run.add_argument("--mismatch-dir", type=Path, default=None,
                     help="where to save mismatch PNGs (default: beside the report, <report>-mismatches/)")
    run.add_argument("--request-log", type=Path, default=None, metavar="FILE.jsonl",
                     help="write one JSON line per request (a trace `executor: trace` replays, plus its times and "
                          "outcome; docs/trace.md)")

    capacity = commands.add_parser("capacity", help="find the highest rate (or concurrency) that meets an SLO")
    capacity.add_argument("scenario", type=Path)
    capacity.add_argument("--slo", action="append", default=[], metavar="EXPR",
                          help="a threshold the load must meet, e.g. 'p(99) < 2s' (repeat for several; default: the "
                               "scenario's thresholds)")
    for flag in ("--url", "--protocol", "--model", "--report", "--weights", "--mismatch-dir", "--html", "--cluster",
                 "--agents"):
        action = next(a for a in run._actions if flag in a.option_strings)
        # str for a flag without a type: argparse's own default, which leaves the string as it is
        capacity.add_argument(flag, type=action.type if action.type is not None else str, choices=action.choices,
                              default=None, help=action.help)
    capacity.add_argument("--plot", type=Path, default=None, help="write a latency-vs-throughput PNG")
    capacity.add_argument("--mode", choices=("rate", "concurrency"), default=None)
    capacity.add_argument("--start", type=float, default=None, help="first rate (/s) or concurrency")
    capacity.add_argument("--max", type=float, default=None, help="highest rate or concurrency to try")
    capacity.add_argument("--step-duration", type=float, default=None, metavar="SECONDS")
    capacity.add_argument("--repeats", type=int, default=None, help="runs per candidate load (default 2)")
    capacity.add_argument("--precision", type=float, default=None, help="stop bisecting within this fraction")
    capacity.add_argument("--no-verify", action="store_true", help="do not check images against their single runs")
    capacity.add_argument("--place-timeout", type=float, default=60.0, metavar="SECONDS",
                          help="with --cluster: how long the cluster may take to place the agents (default 60)")
    capacity.add_argument("--workers", type=_positive, default=1,
                          help="not supported: a capacity search runs in one process (1 is accepted)")

    report = commands.add_parser("report", help="work with saved results")
    report_commands = report.add_subparsers(dest="report_command", required=True, metavar="SUBCOMMAND")
    merge = report_commands.add_parser("merge", help="merge .hlog files of several agents exactly")
    merge.add_argument("files", type=Path, nargs="+")
    merge.add_argument("--output", type=Path, default=None, help="write the combined .hlog here")
    merge.add_argument("--json", type=Path, default=None, help="write the per-tag percentiles as JSON here")
    html = report_commands.add_parser("html", help="render the HTML report of a saved run or capacity search")
    html.add_argument("report", type=Path, help="the JSON report (run --report or capacity --report)")
    html.add_argument("--hlog", type=Path, default=None, help="the run's .hlog: a full percentile spectrum")
    html.add_argument("--output", type=Path, default=None, help="the HTML file (default: REPORT with .html)")

    inspect = commands.add_parser("inspect", help="read a Triton model's tensors and infer the contract to test it by")
    inspect.add_argument("url", help="the server: host:port or grpc://, grpcs://, http://, https:// URL")
    inspect.add_argument("--model", default=None, help="the model to inspect (without it: list the models and say "
                                                       "which look like text-to-image)")
    inspect.add_argument("--protocol", choices=("grpc", "http"), default="grpc",
                         help="how to reach a host:port URL (default grpc)")
    inspect.add_argument("--write-scenario", type=Path, default=None, metavar="FILE",
                         help="write a runnable scenario for the model here")
    inspect.add_argument("--steps", type=_positive, default=None,
                         help="steps for the probe and the written scenario, when the model takes them")
    inspect.add_argument("--size", type=_size, default=None, metavar="WxH",
                         help="image size for the probe and the written scenario, when the model takes it")
    inspect.add_argument("--no-probe", action="store_true",
                         help="never send a request (a float image's value range then stays a guess)")

    tiny = commands.add_parser("make-tiny-flux", help="write a tiny random FluxPipeline folder (offline)")
    tiny.add_argument("directory", type=Path)
    tiny.add_argument("--seed", type=int, default=0, help="weights seed; the same seed gives identical bytes")
    tiny.add_argument("--variant", choices=("schnell", "dev"), default="schnell",
                      help="schnell: no guidance embedding; dev: guidance-embedded transformer, dynamic shift")
    return parser


def cmd_make_tiny_flux(args) -> int:
    require_server_extra("make-tiny-flux")
    from flux_async.pipeline.tiny import make_tiny_flux

    path = make_tiny_flux(args.directory, seed=args.seed, variant=args.variant)
    print(f"wrote tiny FLUX.1-{args.variant} pipeline (seed {args.seed}) to {path}")
    return EXIT_OK


def cmd_serve(args) -> int:
    require_server_extra("serve")
    from flux_async.launch.fleet import ServerFleet, nvml_gpu_count, parse_gpus
    from flux_async.launch.triton_server import DEFAULT_REPOSITORY, ServerConfig, TritonServer
    from flux_async.pipeline.weights import resolve_weights

    try:
        resolve_weights(args.weights)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(f"--weights: {exc}") from None
    if args.precision == "fp8":
        _check_fp8(nvml_gpu_count())
    _check_model_settings()
    for folder in args.extra_repository:
        if not (folder.is_dir() and any(folder.glob("*/config.pbtxt"))):
            raise UsageError(f"--extra-repository {folder}: not a model repository (a folder of model folders, "
                             "each with a config.pbtxt)")
    try:  # the GPU list and, for a fleet, each server's ports
        gpus = parse_gpus(args.gpus, nvml_gpu_count()) if args.gpus is not None else None
        config = ServerConfig(model_repository=args.model_repository or DEFAULT_REPOSITORY,
                              extra_repositories=list(args.extra_repository), weights=args.weights,
                              http_port=args.http_port, grpc_port=args.grpc_port, metrics_port=args.metrics_port,
                              tritonserver=args.tritonserver, model_control_mode=args.model_control_mode,
                              torch_threads=args.torch_threads, startup_timeout_s=args.startup_timeout,
                              cuda_memory_pool_mb=args.cuda_memory_pool_mb,
                              env={contract.ENV_PRECISION: args.precision} if args.precision != "auto" else {})
        service = ServerFleet(gpus, config) if gpus else TritonServer(config)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    servers = service.servers if isinstance(service, ServerFleet) else [service]  # a fleet exactly when gpus
    fronted = args.openai_port is not None or args.nim_port is not None
    if fronted and gpus:
        raise UsageError("--openai-port / --nim-port put a front end before one Triton: not with --gpus")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    what = f"{len(servers)} tritonservers, one per GPU ({','.join(gpus)})" if gpus else "tritonserver"
    beside = "".join(f", beside it {folder}" for folder in config.extra_repositories)
    print(f"flux_async: starting {what} (model repository {config.model_repository}{beside})", flush=True)
    service.start()
    if stop.is_set():
        service.stop()
        return EXIT_OK
    for index, server in enumerate(servers):
        title = f"Triton on GPU {gpus[index]} is ready" if gpus else "Triton is ready"
        print(f"flux_async: {title}\n  HTTP     {server.http_url}\n  gRPC     {server.grpc_url}\n"
              f"  metrics  {server.metrics_url}\n  log      {server.log_path}", flush=True)
    if gpus:
        print(f"flux_async: every server: --url {','.join(s.grpc_url for s in servers)}", flush=True)
    frontend = _start_frontend(args, servers[0], service) if fronted else None
    print("Press Ctrl-C to stop.", flush=True)
    code = EXIT_OK
    while not stop.wait(0.5):
        dead = [s for s in servers if s.process is None or s.process.poll() is not None]
        if dead:
            print(f"flux_async: tritonserver exited unexpectedly; log: {dead[0].log_path}", file=sys.stderr)
            code = EXIT_FAILED
            break
    if frontend is not None:
        frontend.stop()
    service.stop()
    print("flux_async: server stopped", flush=True)
    return code


def _check_model_settings() -> None:
    """The speed switches and the warm-up the models will read from this environment, checked before the server
    starts: a bad value is a usage error naming the variable (the models would refuse to load)."""
    from flux_async.pipeline.speedups import check_environment

    try:
        check_environment()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _check_fp8(gpus: int | None) -> None:
    """`serve --precision fp8` needs torchao here and a GPU; the models check the GPU's compute capability."""
    import importlib.util

    if not gpus:
        raise UsageError("--precision fp8: no NVIDIA GPU found (float8 runs on compute capability 8.9 or newer)")
    if importlib.util.find_spec("torchao") is None:
        raise UsageError("--precision fp8 needs torchao: uv sync --extra fp8 (or pip install 'flux_async[fp8]')")


def _start_frontend(args, server, service):
    """The OpenAI / NIM front end before `server`'s bls (flux_async/frontend), its URLs printed; on failure the
    server is stopped and ServerError raised (exit 3)."""
    from flux_async.frontend.openai_nim import FrontEnd

    frontend = FrontEnd(server.grpc_url, openai_port=args.openai_port, nim_port=args.nim_port,
                        max_batch=args.frontend_max_batch, batch_window_ms=args.frontend_batch_window_ms)
    try:
        frontend.start()
    except (OSError, TimeoutError) as exc:
        service.stop()
        raise ServerError(f"the OpenAI/NIM front end could not start: {exc}") from None
    lines = [f"  {name:<8} {url}  ({route})" for name, url, route in (
        ("OpenAI", frontend.openai_url, "POST /v1/images/generations, --protocol openai-images"),
        ("NIM", frontend.nim_url, "POST /v1/infer, --protocol nim")) if url]
    print("flux_async: the front end is ready (batching up to "
          f"{args.frontend_max_batch} prompts within {args.frontend_batch_window_ms:g} ms)\n" + "\n".join(lines),
          flush=True)
    return frontend


def run_async(coroutine):
    """Run on uvloop when it is installed (faster timers and sockets: less client CPU per request), else asyncio;
    FLUX_ASYNC_LOOP=asyncio forces the standard loop."""
    import asyncio
    import os

    from flux_async.targets.allocator import keep_freed_memory

    keep_freed_memory()
    if os.environ.get("FLUX_ASYNC_LOOP", "uvloop") == "uvloop":
        try:
            import uvloop

            return uvloop.run(coroutine)
        except ImportError:
            pass
    return asyncio.run(coroutine)


def _scenario_command(args, make) -> int:
    """Load the scenario and run `make(scenario)`'s coroutine; the run's exit code."""
    from flux_async.scenario.config import load_scenario

    _, code = run_async(make(load_scenario(args.scenario)))
    return code


def _cluster_flags(args) -> bool:
    """Whether --cluster/--agents were given (checked: both, without --workers, a positive --place-timeout)."""
    if not (args.cluster or args.agents):
        return False
    if not (args.cluster and args.agents) or args.workers > 1:
        raise UsageError("--cluster ADDRESS and --agents N go together (and without --workers: each agent is one "
                         "process)")
    if args.place_timeout <= 0:
        raise UsageError(f"--place-timeout must be > 0 seconds, got {args.place_timeout:g}")
    return True


def cmd_run(args) -> int:
    from flux_async.run.runner import RunOptions, run_scenario
    from flux_async.run.workers import run_workers

    options = RunOptions(url=args.url, protocol=args.protocol, model=args.model, report=args.report, hlog=args.hlog,
                         plot=args.plot, html=args.html, duration_s=args.duration, weights=args.weights,
                         progress=not args.no_progress, verify=not args.no_verify, mismatch_dir=args.mismatch_dir,
                         metrics_url=args.metrics_url, worker=args.worker, allow_faults=args.allow_faults,
                         control_url=args.control_url, model_repository=args.model_repository,
                         request_log=args.request_log)
    if _cluster_flags(args):
        from flux_async.cluster.coordinator import run_cluster

        return _scenario_command(args, lambda s: run_cluster(s, args.cluster, args.agents, options, _console(),
                                                             place_timeout_s=args.place_timeout))
    if args.workers > 1:
        return _scenario_command(args, lambda s: run_workers(s, args.scenario, args.workers, options,
                                                                    _console()))
    return _scenario_command(args, lambda s: run_scenario(s, options, _console()))


def cmd_capacity(args) -> int:
    from flux_async.run.runner import RunOptions, run_capacity

    if args.workers > 1:
        raise UsageError("--workers must be 1: a capacity search runs every step in one process (--cluster ADDRESS "
                         "--agents N spreads every step over a Ray cluster's agents; each step's client verdict says "
                         "when the tester itself was the bottleneck)")

    options = RunOptions(url=args.url, protocol=args.protocol, model=args.model, report=args.report,
                         plot=args.plot, html=args.html, weights=args.weights, verify=not args.no_verify,
                         mismatch_dir=args.mismatch_dir, progress=False)
    overrides = {"mode": args.mode, "start": args.start, "max": args.max, "step_duration_s": args.step_duration,
                 "repeats": args.repeats, "precision": args.precision}
    if _cluster_flags(args):
        from flux_async.cluster.capacity import capacity_cluster

        return _scenario_command(args, lambda s: capacity_cluster(s, args.cluster, args.agents, options, args.slo,
                                                                  overrides, _console(), args.place_timeout))
    return _scenario_command(args, lambda s: run_capacity(s, options, args.slo, overrides, _console()))


def cmd_inspect(args) -> int:
    from flux_async.run.inspect import InspectOptions, inspect

    options = InspectOptions(url=args.url, protocol=args.protocol, model=args.model,
                             write_scenario=args.write_scenario, steps=args.steps, size=args.size,
                             probe=not args.no_probe)
    try:
        return run_async(inspect(options, _console()))
    except ValueError as exc:  # a malformed URL
        if isinstance(exc, FluxAsyncError):
            raise
        raise UsageError(str(exc)) from None


def cmd_report(args) -> int:
    if args.report_command == "html":
        return cmd_report_html(args)
    import json

    from flux_async.report.hlog_merge import merge_logs, summary, write_log

    missing = [str(f) for f in args.files if not f.is_file()]
    if missing:
        raise UsageError(f"no such file: {', '.join(missing)}")
    merged = merge_logs(args.files)
    if not merged.totals:
        raise UsageError("the files hold no interval histograms")
    figures = summary(merged)
    from rich import box
    from rich.table import Table

    table = Table(title=f"merged {len(args.files)} logs (ms)", box=box.SIMPLE_HEAD)
    for column in ("tag", "count", "p50", "p90", "p99", "p999", "max", "mean"):
        table.add_column(column, justify="left" if column == "tag" else "right")
    for tag, f in figures.items():
        table.add_row(tag, str(f["count"]), *(f"{f[k]:.2f}" for k in ("p50", "p90", "p99", "p999", "max", "mean")))
    _console().print(table)
    if args.output:
        write_log(merged, args.output)
    if args.json:
        args.json.write_text(json.dumps({"files": merged.files, "tags": figures}, indent=2) + "\n")
    return EXIT_OK


def cmd_report_html(args) -> int:
    import json

    from flux_async.report.html import write_html

    if not args.report.is_file():
        raise UsageError(f"no such file: {args.report}")
    if args.hlog is not None and not args.hlog.is_file():
        raise UsageError(f"--hlog: no such file: {args.hlog}")
    try:
        report = json.loads(args.report.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"{args.report} is not JSON: {exc}") from None
    if not isinstance(report, dict) or not {"version", "scenario", "target", "passed"} <= set(report):
        raise UsageError(f"{args.report} is not a flux_async report (it needs the keys version, scenario, target, "
                         "passed)")
    output = args.output or args.report.with_suffix(".html")
    write_html(report, output, hlog=args.hlog, source=args.report.name)
    print(f"wrote {output}")
    return EXIT_OK


def _console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=160)  # a log file or a pipe: keep tables whole


COMMANDS = {"run": cmd_run, "capacity": cmd_capacity, "report": cmd_report, "serve": cmd_serve,
            "inspect": cmd_inspect,
            "make-tiny-flux": cmd_make_tiny_flux}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except FluxAsyncError as error:
        print_error(args, error)
        return error.exit_code


def print_error(args, error: FluxAsyncError) -> None:
    """Print `error` where each command always has: what a run meets once started (an unusable or unreachable
    target, a server that did not start, a failed worker) on the run's console, the rest on stderr."""
    command = f"report {args.report_command}" if args.command == "report" else args.command
    if isinstance(error, ServerError) and command == "serve":
        print(f"flux_async: server failed to start: {error}", file=sys.stderr)
    elif isinstance(error, (InvalidTarget, Unavailable, WorkersFailed)):
        started = "the embedded server failed to start: " if isinstance(error, ServerError) else ""
        _console().print(f"flux_async: {started}{error}", style="red", markup=False)
    elif isinstance(error, ScenarioError):
        print(f"flux_async {command}: {error}", file=sys.stderr)  # it starts with the file's name
    else:
        print(f"flux_async {command}: error: {error}", file=sys.stderr)
