"""One report from the reports of `run --workers` processes: histograms added (exactly), counters and
verification summed, timelines put on one grid, phase times the longest worker's."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from flux_async.load.engine import PhaseRun, RunResult
from flux_async.measure.client_usage import combine as combine_clients
from flux_async.measure.gates import GATES, Gate, WorstScores, gate_summary
from flux_async.measure.recorder import Counters, Recorder, add_encoded, add_part
from flux_async.measure.timeline import combine as combine_timelines
from flux_async.report.hlog import read_log
from flux_async.report.json_report import run_report
from flux_async.report.schema import ClientUsageSummary, Figures, Report
from flux_async.report.typed_json import Absent
from flux_async.scenario.config import Scenario


class MergedVerification:
    """The workers' verification summaries, combined (what `run_report` asks of a verifier)."""

    def __init__(self, reports: list[Report]):
        parts = [r.verification.to_json() for r in reports]
        self.enabled = any(p.get("enabled") for p in parts)
        self._phases: dict[str, dict] = {}
        self._classes: dict[tuple[str, str], dict] = {}
        for report in reports:
            for phase in report.phases:
                total = self._phases.setdefault(phase.name, {"checked": 0, "mismatches": 0})
                if phase.verification:
                    total["checked"] += phase.verification.checked
                    total["mismatches"] += phase.verification.mismatches
                for name, scope in (phase.classes or {}).items():
                    part = self._classes.setdefault((phase.name, name), {"checked": 0, "mismatches": 0})
                    if scope.verification:
                        part["checked"] += scope.verification.checked
                        part["mismatches"] += scope.verification.mismatches
        self._summary = combine_verification(parts)

    def summary(self) -> dict:
        return self._summary

    def phase_summary(self, phase: str) -> dict:
        return self._phases.get(phase, {"checked": 0, "mismatches": 0})

    def class_summary(self, phases: set[str], request_class: str) -> dict:
        parts = [self._classes.get((phase, request_class), {}) for phase in phases]
        return {key: sum(p.get(key, 0) for p in parts) for key in ("checked", "mismatches")}


def combine_verification(parts: list[dict]) -> dict:
    """Several load generators' verification summaries as one (counts summed, the worst scores kept, the gate as
    theirs)."""
    gate = next((Gate.from_dict(p["gate"]) for p in parts if p.get("gate")), GATES["auto"])
    worst = WorstScores.combine([p["worst"] for p in parts if p.get("worst")])
    passing = WorstScores.combine([p["worst_passing"] for p in parts if p.get("worst_passing")])
    return {
        "enabled": any(p.get("enabled") for p in parts), "workers": len(parts),
        **{key: sum(p.get(key, 0) for p in parts) for key in ("checked", "mismatches", "unchecked", "references")},
        "reference_errors": {k: v for p in parts for k, v in p.get("reference_errors", {}).items()},
        "unstable_references": [u for p in parts for u in p.get("unstable_references", [])],
        "sample_rate": parts[0].get("sample_rate") if parts else None, **gate_summary(gate, worst, passing),
        "mismatch_examples": [m for p in parts for m in p.get("mismatch_examples", [])][:20]}


def _counters(figures: Figures) -> Counters:
    """A worker's counters, read back from its report's figures (good: its goodput share of its requests)."""
    requests = figures.requests
    good = round(figures.goodput * (requests.sent + requests.dropped)) if isinstance(figures.goodput, float) \
        else requests.ok
    counters = Counters(requests.sent, requests.ok, requests.errors, requests.dropped, figures.images.ok, good)
    counters.errors_by_kind.update(figures.errors_by_kind)
    counters.error_examples.update(figures.error_examples or {})
    return counters


def _recorder(reports: list[Report], partial: Sequence[dict] = ()) -> Recorder:
    """A recorder holding the workers' histograms and per-phase counters, added up; `partial`: what lost cluster
    agents sent last (cluster/agent.py `poll`: 'histograms'; 'counters', 'class_counters' as Counters.to_dict())."""
    recorder = Recorder()
    for part in partial:
        add_part(recorder, part)
    for report in reports:
        add_encoded(recorder, report.histograms or {})
        for phase in report.phases:
            recorder.counters[phase.name].add(_counters(phase.figures))
            for name, scope in (phase.classes or {}).items():
                recorder.class_counters[(phase.name, name)].add(_counters(scope.figures))
        recorder.overflow += report.histogram_overflow
    return recorder


def _run(scenario: Scenario, reports: list[Report]) -> RunResult:
    """The run the workers made together: each phase as long as its longest worker's, finished if all finished."""
    runs = []
    for config in scenario.phases:
        scopes = [p for r in reports for p in r.phases if p.name == config.name]
        if not scopes:
            continue
        run = PhaseRun(config, started_ns=1, ended_ns=1 + int(max(s.figures.duration_s for s in scopes) * 1e9),
                       finished=all(s.finished for s in scopes))
        # server-wide statistics: every worker sees the same deltas
        run.stages = None if isinstance(scopes[0].stages, Absent) else scopes[0].stages
        runs.append(run)
    first = reports[0]
    return RunResult(runs, datetime.fromisoformat(first.started_at), max(r.wall_time_s for r in reports),
                     any(r.interrupted for r in reports), first.target.url, first.target.protocol, first.target.model)


def merged_timeline(reports: list[Report], hlogs: list[Path], partial: Sequence[dict] = ()) -> list[dict]:
    """The workers' rows on one time grid (see timeline.combine), percentiles from their own interval logs; with the
    rows lost cluster agents sent before they were lost (`partial`: 'timeline', 'timeline_epoch_s', 'hlog')."""
    parts = [(report.timeline_epoch_s, report.timeline, read_log(hlog) if hlog.is_file() else [])
             for report, hlog in zip(reports, hlogs) if not isinstance(report.timeline_epoch_s, Absent)]
    parts += [(p["timeline_epoch_s"], p["timeline"], read_log(p["hlog"]) if Path(p["hlog"]).is_file() else [])
              for p in partial if p.get("timeline")]
    return combine_timelines(parts)


def merge_reports(scenario: Scenario, reports: Sequence[dict | Report], hlogs: list[Path], embedded: bool,
                  partial: Sequence[dict] = ()) -> dict:
    """One report (JSON) from the workers' (with their histograms and `timeline_epoch_s`) and interval logs;
    `partial`: the last heartbeats of lost cluster agents (cluster/agent.py `poll`), added in."""
    parsed = [Report.from_json(r) if isinstance(r, dict) else r for r in reports]
    first = parsed[0]
    merged = run_report(scenario, _run(scenario, parsed), _recorder(parsed, partial), embedded=embedded,
                        verifier=MergedVerification(parsed), timeline=merged_timeline(parsed, hlogs, partial),
                        gpu=first.gpu, metrics_url=first.metrics_url)
    merged.workers = len(parsed)
    client = combine_clients([{**r.client.to_json(), "name": f"worker {r.worker}"} for r in parsed if r.client])
    merged.client = ClientUsageSummary.from_json(client) if client else None
    return merged.to_json()
