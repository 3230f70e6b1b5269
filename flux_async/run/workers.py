"""`run --workers N`: N load-generator processes share a scenario's load, and their results merge exactly.

Each worker runs the scenario with 1/N of every phase's load (open-loop arrivals interleaved: worker i sends arrivals
i, i + N, ... of the one schedule; concurrency, burst sizes, closed-loop request counts and in-flight caps divided;
prompt draws varied per worker) and writes its report with its raw HDR
histograms; the parent merges them (report/merge_reports.py: HDR histograms add without loss, counters and the
verification sum) and writes one report, one merged .hlog and the plot.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import tempfile
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

from flux_async.errors import EXIT_UNREACHABLE, WorkersFailed, WorkerSplitError  # noqa: F401  (its old import location)
from flux_async.report.hlog_merge import merge_logs, write_log
from flux_async.report.merge_reports import merge_reports
from flux_async.report.schema import Report
from flux_async.run.outputs import finish
from flux_async.run.request_log import merge_logs as merge_request_logs
from flux_async.run.session import RunOptions, apply_overrides, embedded_server
from flux_async.scenario.config import Scenario


def divide(scenario: Scenario, index: int, count: int) -> Scenario:
    """Worker `index`'s share (of `count`) of every phase's load; raises WorkerSplitError when one cannot split."""
    return replace(scenario, phases=[phase.split(index, count) for phase in scenario.phases])


def worker_command(scenario_path: Path, index: int, count: int, url: str, options: RunOptions, folder: Path,
                   metrics_url: str | None = None) -> list[str]:
    command = [sys.executable, "-m", "flux_async", "run", str(scenario_path), "--worker", f"{index}/{count}",
               "--url", url, "--no-progress", "--report", str(folder / f"worker-{index}.json"),
               "--hlog", str(folder / f"worker-{index}.hlog"),
               "--mismatch-dir", str((options.mismatch_dir or folder / "mismatches") / f"worker-{index}")]
    for flag, value in (("--protocol", options.protocol), ("--model", options.model),
                        ("--duration", options.duration_s), ("--metrics-url", options.metrics_url or metrics_url)):
        if value is not None:
            command += [flag, str(value)]
    if not options.verify:
        command.append("--no-verify")
    if options.request_log:
        command += ["--request-log", str(folder / f"worker-{index}.jsonl")]
    return command


async def run_workers(scenario: Scenario, scenario_path: Path, count: int, options: RunOptions,
                      console) -> tuple[dict, int]:
    """Start the embedded server if needed, run `count` workers, merge and report."""
    from flux_async.report.json_report import print_summary

    for index in range(count):
        divide(scenario, index, count)  # raises WorkerSplitError before anything starts
    scenario = apply_overrides(scenario, options)
    folder = Path(tempfile.mkdtemp(prefix="flux_async_workers_"))
    async with AsyncExitStack() as stack:
        embedded = not scenario.target.urls
        if embedded:
            scenario, _ = await embedded_server(scenario, options, console, stack)
        url = ",".join(scenario.target.urls)
        console.print(f"flux_async: {count} workers against {url} …")
        metrics_url = scenario.target.metrics_url  # the embedded server's, when there is one
        processes = [await asyncio.create_subprocess_exec(*worker_command(scenario_path, i, count, url, options,
                                                                          folder, metrics_url))
                     for i in range(count)]
        loop = asyncio.get_running_loop()

        def forward(sig=signal.SIGINT):
            for process in processes:
                if process.returncode is None:
                    process.send_signal(sig)

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, forward, sig)
        try:
            codes = await asyncio.gather(*(p.wait() for p in processes))
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    paths = [folder / f"worker-{i}.json" for i in range(count)]
    if any(code == EXIT_UNREACHABLE for code in codes) or not all(p.is_file() for p in paths):
        raise WorkersFailed(f"a worker could not run (exit codes {codes}); logs in {folder}", max(codes))
    reports = [Report.from_json(json.loads(p.read_text())) for p in paths]
    hlogs = [folder / f"worker-{i}.hlog" for i in range(count)]
    report = merge_reports(scenario, reports, hlogs, embedded)
    if options.hlog:
        write_log(merge_logs([h for h in hlogs if h.is_file()]), options.hlog)
    if options.request_log:  # the workers' logs, merged by timestamp
        merge_request_logs([folder / f"worker-{i}.jsonl" for i in range(count)], options.request_log)
    from flux_async.report.plots import plot_run

    return finish(report, options, plot_run, print_summary, console)
