"""`run`: a scenario from start to report — the embedded server when no URL is given, the target, the engine, live
progress, signals, and the outputs. Returns the report and the exit code (DESIGN.md §4)."""

from __future__ import annotations

import asyncio
import signal
from dataclasses import dataclass, replace
from pathlib import Path

from .engine import Engine
from .progress import show_progress
from .report import HlogWriter, build_report, print_summary, write_json
from .scenario import PROTOCOLS, Scenario
from .stats import Recorder
from .targets import TargetUnreachable, make_target
from .verify import Verifier, workload_keys

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3


class UsageError(ValueError):
    """A flag that does not fit the scenario (exit code 2)."""


@dataclass
class RunOptions:
    url: str | None = None
    protocol: str | None = None
    model: str | None = None
    report: Path | None = None
    hlog: Path | None = None
    duration_s: float | None = None
    weights: str | None = None
    progress: bool = True
    verify: bool = True  # False: --no-verify
    mismatch_dir: Path | None = None


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
    if options.duration_s is not None and options.duration_s <= 0:
        raise UsageError(f"--duration must be > 0 seconds, got {options.duration_s}")
    return replace(scenario, target=target)


async def run_scenario(scenario: Scenario, options: RunOptions, console) -> tuple[dict | None, int]:
    """Run and report; (report, exit code). The report is written even when the run is interrupted."""
    scenario = apply_overrides(scenario, options)
    server = None
    if not scenario.target.urls:
        from .server import ServerError, TritonServer

        console.print("flux_async: no URL given: starting an embedded Triton server on the tiny weights …")
        server = TritonServer(weights=options.weights)
        try:
            await asyncio.to_thread(server.start)
        except ServerError as exc:
            console.print(f"[red]flux_async: the embedded server failed to start:[/red] {exc}")
            return None, EXIT_UNREACHABLE
        address = server.http_url if scenario.target.protocol == "http" else server.grpc_url
        scenario = replace(scenario, target=replace(scenario.target, urls=[address]))
    try:
        return await _run_against(scenario, options, console, embedded=server is not None)
    finally:
        if server is not None:
            await asyncio.to_thread(server.stop)


async def _run_against(scenario: Scenario, options: RunOptions, console, embedded: bool) -> tuple[dict | None, int]:
    try:
        target = make_target(scenario.target)
    except ValueError as exc:
        console.print(f"[red]flux_async: target.urls: {exc}[/red]")
        return None, EXIT_USAGE
    try:
        await target.open()
    except TargetUnreachable as exc:
        console.print(f"[red]flux_async: {exc}[/red]")
        return None, EXIT_UNREACHABLE
    verifier = None
    if scenario.verify.enabled and options.verify:
        verifier = Verifier(scenario.verify, scenario.target, mismatch_folder(scenario, options))
        await verifier.open()
        keys = workload_keys(scenario.workload)
        if verifier.enabled and keys:
            console.print(f"flux_async: computing {len(keys)} reference images (single-prompt requests, one at a "
                          "time) …")
            await verifier.prepare(keys)
    recorder = Recorder()
    hlog = HlogWriter(options.hlog) if options.hlog else None
    engine = Engine(scenario, target, recorder, max_phase_s=options.duration_s,
                    on_interval=hlog.write if hlog else None, verifier=verifier)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, engine.stop)
    progress = asyncio.create_task(show_progress(engine, console)) if options.progress else None
    try:
        result = await engine.run()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if progress is not None:
            progress.cancel()
            await asyncio.gather(progress, return_exceptions=True)
        if hlog is not None:
            hlog.close()
        await target.close()
        if verifier is not None:
            await verifier.close()
    report = build_report(scenario, result, recorder, embedded=embedded, verifier=verifier)
    if options.report:
        write_json(report, options.report)
    print_summary(report, console)
    return report, EXIT_OK if report["passed"] else EXIT_FAILED
