"""`run` and `capacity` from start to exit code: in a session (session.py), the engine (or the capacity search),
live progress, signals and faults, then the outputs (outputs.py; docs/cli.md)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import replace
from datetime import datetime, timezone

from flux_async.errors import UsageError
from flux_async.load.engine import Engine
from flux_async.measure.client_usage import ClientUsage
from flux_async.measure.gpu import GpuSampler
from flux_async.measure.recorder import Recorder, encode_histograms
from flux_async.measure.timeline import Timeline
from flux_async.measure.triton_metrics import MetricsScraper
from flux_async.report.hlog import HlogWriter
from flux_async.report.json_report import build_report, print_summary
from flux_async.report.progress import show_progress
from flux_async.run.capacity import CapacitySearch, LocalSteps, capacity_report, describe_capacity
from flux_async.run.outputs import finish
from flux_async.run.request_log import RequestLog
from flux_async.run.session import RunOptions, Session, apply_overrides, session
from flux_async.run.workers import divide
from flux_async.scenario.config import CapacityConfig, Scenario, unknown_class
from flux_async.scenario.thresholds import parse_threshold


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
        return await run_session(s, options, console)


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


async def run_session(s: Session, options: RunOptions, console, *, start_at_ns: int | None = None,
               on_engine: Callable | None = None, handle_signals: bool = True) -> tuple[dict, int]:
    """One process's run. A cluster agent (cluster/agent.py) starts at `start_at_ns` on its own perf_counter clock,
    is handed the engine, recorder, interval log and timeline (`on_engine`) to poll and stop it, and installs no
    signal handlers (not on the main thread)."""
    scenario, target, verifier = s.scenario, s.target, s.verifier
    if options.worker is not None:
        scenario = divide(scenario, *options.worker)
    for phase in scenario.phases:
        trace = phase.report_fields().get("trace")
        if trace and trace["skipped_lines"]:
            console.print(f"flux_async: phase {phase.name!r}: {trace['skipped_lines']} bad lines of {trace['file']} "
                          "skipped (skip_bad_lines)")
    recorder, timeline = Recorder(), Timeline()
    hlog = HlogWriter(options.hlog) if options.hlog else None
    request_log = RequestLog(options.request_log) if options.request_log else None
    gpu = GpuSampler()
    metrics_url = options.metrics_url or scenario.target.metrics_url
    scraper = MetricsScraper(metrics_url) if metrics_url else None
    samplers: dict[str, Callable] = ({"gpu": gpu} if gpu.available else {}) | (
        {"metrics": scraper} if scraper is not None else {})
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
                    min(5.0, scenario.target.request_timeout_s), request_log=request_log)
    if on_engine is not None:
        on_engine(engine, recorder, hlog, timeline)
    if start_at_ns is not None:
        await asyncio.sleep(max(0.0, (start_at_ns - time.perf_counter_ns()) / 1e9))
    progress = asyncio.create_task(show_progress(engine, console)) if options.progress else None
    usage = ClientUsage()
    try:
        with stop_on_signals(engine.stop) if handle_signals else nullcontext():
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
        if request_log is not None:  # written whatever ended the run (Ctrl-C included)
            request_log.close()
        if scraper is not None:
            await scraper.close()
    client = usage.finish(sum(p.scheduled for p in result.phases), recorder, engine)
    if verifier is not None:
        await verifier.settle()
    gpu_summary = {"available": gpu.available, "reason": gpu.reason}
    report = build_report(scenario, result, recorder, embedded=s.embedded, verifier=verifier,
                          timeline=timeline.rows, gpu=gpu_summary, metrics_url=metrics_url,
                          faults=injector.summary() if injector else None)
    report["client"] = client
    if scraper is not None and scraper.model_settings:
        report["server"] = scraper.model_settings
    if options.worker is not None:
        report["worker"] = f"{options.worker[0]}/{options.worker[1]}"
        report["histograms"] = encode_histograms(recorder)
        report["timeline_epoch_s"] = result.started_at.timestamp()  # the parent aligns the workers' timelines
    from flux_async.report.plots import plot_run

    return finish(report, options, plot_run, print_summary, console)


def capacity_settings(scenario: Scenario, slo: list[str], overrides: dict) -> tuple[list[str], CapacityConfig]:
    """The SLO expressions (--slo, or the scenario's thresholds) and the search's settings with the command line's
    overrides; UsageError when there is no SLO or it names an unknown class."""
    expressions = slo or [t.expr for t in scenario.thresholds]
    if not expressions:
        raise UsageError("give the SLO with --slo EXPR (e.g. --slo 'p(99) < 2s'), or thresholds in the scenario")
    for expr in expressions:
        try:
            problem = unknown_class(parse_threshold(expr), scenario)
        except ValueError as exc:
            raise UsageError(f"--slo: {exc}") from None
        if problem:
            raise UsageError(f"--slo: {problem}")
    return expressions, replace(scenario.capacity, **{k: v for k, v in overrides.items() if v is not None})


async def run_capacity(scenario: Scenario, options: RunOptions, slo: list[str], overrides: dict,
                       console) -> tuple[dict, int]:
    """Search the capacity; (report, exit code 0 when a capacity under the SLO was found)."""
    expressions, config = capacity_settings(scenario, slo, overrides)
    started_at = datetime.now(timezone.utc)
    async with session(scenario, options, console) as s:
        steps = LocalSteps(s.scenario, s.target, s.verifier)
        search = CapacitySearch(s.scenario, steps, config, expressions, console)
        with stop_on_signals(steps.stop):
            section = await search.run()
        if s.verifier is not None:
            await s.verifier.settle()
        report = capacity_report(s.scenario, s.target, section, started_at,
                                 s.verifier.summary() if s.verifier else None)
    from flux_async.report.plots import plot_capacity

    return finish(report, options, plot_capacity, describe_capacity, console)
