"""`run --workers N`: N load-generator processes share a scenario's load, and their results merge exactly.

Each worker runs the scenario with 1/N of every phase's load (rates, concurrency, burst sizes, request counts and
in-flight caps divided; Poisson seeds and prompt draws varied per worker) and writes its report with its raw HDR
histograms; the parent adds the histograms (exactly: HDR histograms add without loss), sums the counters and the
verification, and writes one report, one merged .hlog and the plot.
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

from flux_async.errors import EXIT_UNREACHABLE, WorkerSplitError, WorkersFailed
from flux_async.measure.client_usage import combine as combine_clients
from flux_async.load.engine import PhaseRun, RunResult
from flux_async.measure.gates import GATES, Gate, WorstScores, gate_summary
from flux_async.report.hlog_merge import merge_logs, read_log, write_log
from flux_async.scenario.config import RampStage, Scenario
from flux_async.measure.recorder import Counters, Recorder, new_histogram
from flux_async.measure.timeline import combine


def _share(total: int, index: int, count: int, what: str) -> int:
    if total < count:
        raise WorkerSplitError(f"{what} {total} cannot be split over {count} workers (each needs at least 1)")
    return total // count + (1 if index < total % count else 0)


def divide(scenario: Scenario, index: int, count: int) -> Scenario:
    """Worker `index`'s share (of `count`) of every phase's load."""
    phases = []
    for phase in scenario.phases:
        where = f"phase {phase.name!r}:"
        share: dict = {"seed": phase.seed + index}
        if phase.rate is not None:
            share["rate"] = phase.rate / count
        if phase.executor.startswith("ramping"):
            share["start"] = phase.start / count
            share["stages"] = [RampStage(s.target / count, s.duration_s) for s in phase.stages]
        if phase.concurrency is not None:
            share["concurrency"] = _share(phase.concurrency, index, count, f"{where} concurrency")
        if phase.burst_size is not None:
            share["burst_size"] = _share(phase.burst_size, index, count, f"{where} burst_size")
        if phase.requests is not None:
            share["requests"] = _share(phase.requests, index, count, f"{where} requests")
        if phase.max_in_flight is not None:
            share["max_in_flight"] = _share(phase.max_in_flight, index, count, f"{where} max_in_flight")
        phases.append(replace(phase, **share))
    return replace(scenario, phases=phases)


def encode_histograms(recorder: Recorder) -> dict[str, str]:
    """The recorder's cumulative histograms, for the parent to add up: {'phase\\tmetric\\tprotocol\\tn': payload}."""
    return {"\t".join(map(str, key)): histogram.encode().decode("ascii")
            for key, histogram in recorder.histograms.items()}


def _decode_into(recorder: Recorder, encoded: dict[str, str]) -> None:
    for key, payload in encoded.items():
        phase, metric, protocol, prompts = key.split("\t")
        target = recorder.histograms.setdefault((phase, metric, protocol, int(prompts)), new_histogram())
        target.decode_and_add(payload)


class MergedVerification:
    """The workers' verification summaries, combined (what `build_report` asks of a verifier)."""

    def __init__(self, reports: list[dict]):
        parts = [r["verification"] for r in reports]
        self.enabled = any(p.get("enabled") for p in parts)
        self._phases: dict[str, dict] = {}
        for report in reports:
            for phase in report["phases"]:
                total = self._phases.setdefault(phase["name"], {"checked": 0, "mismatches": 0})
                for key in total:
                    total[key] += phase.get("verification", {}).get(key, 0)
        gate = next((Gate.from_dict(p["gate"]) for p in parts if p.get("gate")), GATES["auto"])
        worst = WorstScores.combine([p["worst"] for p in parts if p.get("worst")])
        passing = WorstScores.combine([p["worst_passing"] for p in parts if p.get("worst_passing")])
        self._summary = {
            "enabled": self.enabled, "workers": len(parts),
            **{key: sum(p.get(key, 0) for p in parts) for key in ("checked", "mismatches", "unchecked", "references")},
            "reference_errors": {k: v for p in parts for k, v in p.get("reference_errors", {}).items()},
            "unstable_references": [u for p in parts for u in p.get("unstable_references", [])],
            "sample_rate": parts[0].get("sample_rate") if parts else None, **gate_summary(gate, worst, passing),
            "mismatch_examples": [m for p in parts for m in p.get("mismatch_examples", [])][:20]}

    def summary(self) -> dict:
        return self._summary

    def phase_summary(self, phase: str) -> dict:
        return self._phases.get(phase, {"checked": 0, "mismatches": 0})


def merge_reports(scenario: Scenario, reports: list[dict], hlogs: list[Path], embedded: bool) -> dict:
    """One report from the workers': histograms added, counters summed, phase times the longest worker's."""
    from flux_async.report.json_report import build_report

    recorder = Recorder()
    for report in reports:
        _decode_into(recorder, report["histograms"])
        for phase in report["phases"]:
            counters = Counters(phase["requests"]["sent"], phase["requests"]["ok"], phase["requests"]["errors"],
                                phase["requests"]["dropped"], phase["images"]["ok"])
            counters.errors_by_kind.update(phase["errors_by_kind"])
            recorder.counters[phase["name"]].add(counters)
        recorder.overflow += report.get("histogram_overflow", 0)
    runs = []
    for config in scenario.phases:
        scopes = [p for r in reports for p in r["phases"] if p["name"] == config.name]
        if not scopes:
            continue
        run = PhaseRun(config, started_ns=1, ended_ns=1 + int(max(s["duration_s"] for s in scopes) * 1e9),
                       finished=all(s["finished"] for s in scopes))
        run.stages = scopes[0].get("stages")  # server-wide statistics: every worker sees the same deltas
        runs.append(run)
    first = reports[0]
    result = RunResult(runs, _started_at(first), max(r["wall_time_s"] for r in reports),
                       any(r["interrupted"] for r in reports), first["target"]["url"], first["target"]["protocol"],
                       first["target"]["model"])
    merged = build_report(scenario, result, recorder, embedded=embedded, verifier=MergedVerification(reports),
                          timeline=_timeline(reports, hlogs), gpu=first.get("gpu"),
                          metrics_url=first.get("metrics_url"))
    merged["workers"] = len(reports)
    merged["client"] = combine_clients([{**r["client"], "name": f"worker {r['worker']}"} for r in reports
                                        if r.get("client")])
    return merged


def _started_at(report: dict):
    from datetime import datetime

    return datetime.fromisoformat(report["started_at"])


def _timeline(reports: list[dict], hlogs: list[Path]) -> list[dict]:
    """The workers' rows on one time grid (see timeline.combine), percentiles from their own interval logs."""
    return combine([(report["timeline_epoch_s"], report.get("timeline", []), read_log(hlog) if hlog.is_file() else [])
                    for report, hlog in zip(reports, hlogs) if "timeline_epoch_s" in report])


def worker_command(scenario_path: Path, index: int, count: int, url: str, options, folder: Path,
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
    return command


async def run_workers(scenario: Scenario, scenario_path: Path, count: int, options, console) -> tuple[dict, int]:
    """Start the embedded server if needed, run `count` workers, merge and report."""
    from flux_async.report.json_report import print_summary
    from flux_async.run.runner import apply_overrides, embedded_server, finish

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
    reports = [json.loads(p.read_text()) for p in paths]
    hlogs = [folder / f"worker-{i}.hlog" for i in range(count)]
    report = merge_reports(scenario, reports, hlogs, embedded)
    if options.hlog:
        write_log(merge_logs([h for h in hlogs if h.is_file()]), options.hlog)
    from flux_async.report.plots import plot_run

    return finish(report, options, plot_run, print_summary, console)
