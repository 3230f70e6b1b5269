"""`run` and `capacity` from start to exit code: the embedded server when no URL is given, the target, the
references, the engine (or the capacity search), live progress, signals, and the outputs (DESIGN.md §4)."""

from __future__ import annotations

import asyncio
import signal
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from flux_async.errors import EXIT_FAILED, EXIT_OK, InvalidTarget, UsageError
from flux_async.extras import require_server_extra
from flux_async.measure.client_usage import ClientUsage
from flux_async.load.engine import Engine
from flux_async.measure.gpu import GpuSampler
from flux_async.measure.triton_metrics import MetricsScraper
from flux_async.report.progress import show_progress
from flux_async.report.json_report import HlogWriter, build_report, print_summary, write_json
from flux_async.scenario.config import PROTOCOLS, Scenario
from flux_async.measure.recorder import Recorder
from flux_async.measure.timeline import Timeline
from flux_async.targets.triton import make_target
from flux_async.verification.verifier import Verifier, workload_keys

@dataclass
class RunOptions:
    url: str | None = None
    protocol: str | None = None
    model: str | None = None
    report: Path | None = None
    hlog: Path | None = None
    plot: Path | None = None
    html: Path | None = None
    duration_s: float | None = None
    weights: str | None = None
    progress: bool = True
    verify: bool = True  # False: --no-verify
    mismatch_dir: Path | None = None
    metrics_url: str | None = None
    worker: tuple[int, int] | None = None  # (index, count): this process runs one share of a --workers run
    allow_faults: bool = False
    control_url: str | None = None
    model_repository: Path | None = None  # for the embedded server (default: triton_models/)


def mismatch_folder(scenario: Scenario, options: RunOptions) -> Path:
    """Where mismatch PNGs go: --mismatch-dir, the scenario's verify.output_dir, or beside the report."""
    if options.mismatch_dir:
        return Path(options.mismatch_dir)
    if scenario.verify.output_dir:
        return Path(scenario.verify.output_dir)
    if options.report:
        return Path(options.report).with_name(Path(options.report).stem + "-mismatches")
    return Path("flux_async-mismatches") / scenario.name


def apply_overrides(scenario: Scenario, options: RunOptions) -> Scenario:
    """The scenario with the command line's --url, --protocol and --model in place of its own."""
    target = scenario.target
    if options.protocol is not None:
        if options.protocol not in PROTOCOLS:
            raise UsageError(f"--protocol must be one of {', '.join(PROTOCOLS)}, got {options.protocol!r}")
        target = replace(target, protocol=options.protocol)
    if options.url:
        target = replace(target, urls=[u.strip() for u in options.url.split(",") if u.strip()])
    if options.model:
        target = replace(target, model=options.model)
    if options.control_url:
        target = replace(target, control_url=options.control_url)
    if options.duration_s is not None and options.duration_s <= 0:
        raise UsageError(f"--duration must be > 0 seconds, got {options.duration_s}")
    return replace(scenario, target=target)


@dataclass
class Session:
    """What a run or a capacity search works with: the scenario (URLs filled in), the opened target, the verifier
    with its references, and whether the server is embedded."""

    scenario: Scenario
    target: object
    verifier: Verifier | None
    embedded: bool
    server: object = None  # the embedded TritonServer


@asynccontextmanager
async def session(scenario: Scenario, options: RunOptions, console):
    """Start the embedded server if no URL is given, open the target, prepare the references; clean up after.
    Raises InvalidTarget (bad URLs), TargetUnreachable or ServerError."""
    scenario = apply_overrides(scenario, options)
    async with AsyncExitStack() as stack:
        embedded, server = not scenario.target.urls, None
        if embedded:
            scenario, server = await embedded_server(scenario, options, console, stack)
        try:
            target = make_target(scenario.target)
        except ValueError as exc:
            raise InvalidTarget(f"target.urls: {exc}") from None
        await target.open()
        stack.push_async_callback(target.close)
        verifier = None
        if scenario.verify.enabled and options.verify:
            verifier = Verifier(scenario.verify, scenario.target, mismatch_folder(scenario, options))
            stack.push_async_callback(verifier.close)
            await verifier.open()
            keys = workload_keys(scenario.workload)
            if verifier.enabled and keys:
                console.print(f"flux_async: computing {len(keys)} reference images (single-prompt requests, one at "
                              "a time) …")
                await verifier.prepare(keys)
        yield Session(scenario, target, verifier, embedded, server)


async def embedded_server(scenario: Scenario, options: RunOptions, console, stack: AsyncExitStack):
    """Start Triton for this run (explicit model control when the scenario injects faults); (scenario, server).
    Raises MissingExtra without the server extra, ServerError when it does not start."""
    require_server_extra("a run with no URL (it starts an embedded Triton server)")
    from flux_async.launch.triton_server import TritonServer

    console.print("flux_async: no URL given: starting an embedded Triton server on the tiny weights …")
    from flux_async.launch.triton_server import DEFAULT_REPOSITORY

    # --exit-timeout-secs: when the run is over, unloading the models gracefully (~15 s here) buys nothing
    server = TritonServer(weights=options.weights, model_control_mode="explicit" if scenario.faults else "none",
                          model_repository=options.model_repository or DEFAULT_REPOSITORY,
                          extra_args=["--exit-timeout-secs=3"])
    await asyncio.to_thread(server.start)
    stack.push_async_callback(asyncio.to_thread, server.stop)
    address = server.http_url if scenario.target.protocol == "http" else server.grpc_url
    return replace(scenario, target=replace(
        scenario.target, urls=[address], metrics_url=scenario.target.metrics_url or server.metrics_url,
        control_url=scenario.target.control_url or f"http://{server.http_url}")), server


@contextmanager
def stop_on_signals(stop):
    """SIGINT and SIGTERM call `stop` (graceful; a second one cancels) while the block runs."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def run_scenario(scenario: Scenario, options: RunOptions, console) -> tuple[dict, int]:
    """Run and report; (report, exit code). The report is written even when the run is interrupted; a run that
    cannot start raises a FluxAsyncError."""
    if not scenario.phases:
        raise UsageError(f"{scenario.source} has no phases: `run` needs some (a capacity-only scenario is for "
                         "`capacity`)")
    check_faults(apply_overrides(scenario, options), options)
    async with session(scenario, options, console) as s:
        return await _run(s, options, console)


def check_faults(scenario: Scenario, options: RunOptions) -> None:
    """Faults change the server: they run only with --allow-faults, and kill-server only on the embedded server."""
    if not scenario.faults:
        return
    if not options.allow_faults:
        raise UsageError(f"{scenario.source} lists faults, which change the server: pass --allow-faults to run them")
    if any(f.action == "kill-server" for f in scenario.faults) and scenario.target.urls:
        raise UsageError("faults: kill-server needs the embedded server (give no URL)")
    control = scenario.target.control_url or (scenario.target.protocol == "http" and scenario.target.urls)
    if scenario.target.urls and not control:
        raise UsageError("faults need Triton's HTTP endpoint for model control: set target.control_url "
                         "(e.g. http://host:8000)")


async def _run(s: Session, options: RunOptions, console) -> tuple[dict, int]:
    scenario, target, verifier = s.scenario, s.target, s.verifier
    if options.worker is not None:
        from flux_async.run.workers import divide

        scenario = divide(scenario, *options.worker)
    recorder, timeline = Recorder(), Timeline()
    hlog = HlogWriter(options.hlog) if options.hlog else None
    gpu = GpuSampler()
    metrics_url = options.metrics_url or scenario.target.metrics_url
    samplers = ({"gpu": gpu} if gpu.available else {}) | ({"metrics": MetricsScraper(metrics_url)} if metrics_url
                                                          else {})
    injector = None
    if scenario.faults:
        from flux_async.load.faults import FaultInjector, ServerControl

        control = scenario.target.control_url or f"http://{scenario.target.urls[0].split('://')[-1]}"
        injector = FaultInjector(scenario.faults, ServerControl(control, s.server))
    engine = Engine(scenario, target, recorder, max_phase_s=options.duration_s, samplers=samplers,
                    listeners=[timeline.add] + ([hlog.write] if hlog else []), verifier=verifier,
                    job_stream=options.worker[0] if options.worker else 0,
                    observers=[injector.observe] if injector else [],
                    lost_after_s=None if any(f.action == "kill-server" for f in scenario.faults) else
                    min(5.0, scenario.target.request_timeout_s))
    progress = asyncio.create_task(show_progress(engine, console)) if options.progress else None
    usage = ClientUsage()
    try:
        with stop_on_signals(engine.stop):
            if injector is None:
                result = await engine.run()
            else:
                ended = asyncio.Event()
                faults = asyncio.create_task(injector.run(ended))
                try:
                    result = await engine.run()
                finally:
                    ended.set()
                    await faults
    finally:
        if progress is not None:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
        if hlog is not None:
            hlog.close()
        if "metrics" in samplers:
            await samplers["metrics"].close()
    client = usage.finish(sum(p.scheduled for p in result.phases), recorder, engine)
    if verifier is not None:
        await verifier.settle()
    gpu_summary = {"available": gpu.available, "reason": gpu.reason}
    report = build_report(scenario, result, recorder, embedded=s.embedded, verifier=verifier,
                          timeline=timeline.rows, gpu=gpu_summary, metrics_url=metrics_url,
                          faults=injector.summary() if injector else None)
    report["client"] = client
    if options.worker is not None:
        from flux_async.run.workers import encode_histograms

        report["worker"] = f"{options.worker[0]}/{options.worker[1]}"
        report["histograms"] = encode_histograms(recorder)
        report["timeline_epoch_s"] = result.started_at.timestamp()  # the parent aligns the workers' timelines
    from flux_async.report.plots import plot_run

    return finish(report, options, plot_run, print_summary, console)


def finish(report: dict, options: RunOptions, plot, describe, console) -> tuple[dict, int]:
    """Write the JSON, the plot and the HTML page when asked, print the summary; (report, exit code)."""
    from flux_async.measure.machine import describe_machine

    report.setdefault("machine", describe_machine())
    if options.report:
        write_json(report, options.report)
    if options.plot:
        plot(report, options.plot)
    if options.html:
        from flux_async.report.html import write_html

        write_html(report, options.html, hlog=options.hlog)
    describe(report, console)
    return report, EXIT_OK if report["passed"] else EXIT_FAILED


async def run_capacity(scenario: Scenario, options: RunOptions, slo: list[str], overrides: dict,
                       console) -> tuple[dict, int]:
    """Search the capacity; (report, exit code 0 when a capacity under the SLO was found)."""
    from flux_async.run.capacity import CapacitySearch, capacity_report, describe_capacity
    from flux_async.scenario.thresholds import parse_threshold

    expressions = slo or [t.expr for t in scenario.thresholds]
    if not expressions:
        raise UsageError("give the SLO with --slo EXPR (e.g. --slo 'p(99) < 2s'), or thresholds in the scenario")
    for expr in expressions:
        try:
            parse_threshold(expr)
        except ValueError as exc:
            raise UsageError(f"--slo: {exc}") from None
    config = replace(scenario.capacity, **{k: v for k, v in overrides.items() if v is not None})
    started_at = datetime.now(timezone.utc)
    async with session(scenario, options, console) as s:
        search = CapacitySearch(s.scenario, s.target, config, expressions, s.verifier, console)
        with stop_on_signals(lambda: search.engine.stop() if getattr(search, "engine", None) else None):
            section = await search.run()
        if s.verifier is not None:
            await s.verifier.settle()
        report = capacity_report(s.scenario, s.target, section, started_at, s.verifier)
    from flux_async.report.plots import plot_capacity

    return finish(report, options, plot_capacity, describe_capacity, console)
