"""`capacity`: the highest arrival rate (or concurrency) that meets an SLO.

The search doubles the load from `start` until a step fails (or `max` is reached), then bisects between the last
passing and the first failing load until they are within `precision`. Each candidate runs `repeats` times (a
third run breaks a tie): one lucky or unlucky step does not decide. A step passes when every SLO expression holds,
no image mismatches, and — unless the SLO says otherwise — under 1 % of requests fail or are dropped; in rate mode the
completions must also keep up with 95 % of the offered rate (a backlog that grows shows there first). Their rate
is taken between the first and last completion of the step, so a long latency alone does not read as falling behind.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Protocol

from flux_async.load.engine import Engine
from flux_async.measure.client_usage import ClientUsage, warning_line
from flux_async.measure.client_usage import combine as combine_clients
from flux_async.measure.recorder import Recorder
from flux_async.report.json_report import (
    DISABLED_VERIFICATION,
    client_json,
    evaluate,
    figures,
    has_slo,
    verification_lines,
)
from flux_async.report.schema import CapacityReport, CapacitySection, ClientUsageSummary, Verification
from flux_async.report.schema import Target as TargetSection
from flux_async.scenario.config import CapacityConfig, Scenario
from flux_async.scenario.executors import ConstantArrivalRate, ConstantConcurrency, Executor
from flux_async.scenario.thresholds import Threshold, parse_threshold
from flux_async.scenario.workload import Job
from flux_async.targets.base import Outcome, Target

IMPLICIT = {"error_rate": "error_rate < 1%", "drop_rate": "drop_rate < 1%"}
KEEP_UP = 0.95  # rate mode: a step passes only if it completes at least 95 % of the offered rate

class CompletionClock:
    """An engine observer that notes when each successful request completed."""

    def __init__(self) -> None:
        self.done_ns: list[int] = []

    def __call__(self, phase: str, job: Job, outcome: Outcome) -> None:
        if outcome.ok:
            self.done_ns.append(outcome.done_ns)

    def rate_per_s(self) -> float | None:
        """Completions per second between the first and the last (None under three completions)."""
        if len(self.done_ns) < 3:
            return None
        return (len(self.done_ns) - 1) / ((max(self.done_ns) - min(self.done_ns)) / 1e9 or 1e-9)

def keep_up_result(load: float, rate: float | None) -> dict:
    """Rate mode's keep-up check, in the shape of a threshold result."""
    floor = KEEP_UP * load
    return {"expr": f"completion_rate_per_s >= {floor:.6g}", "value": rate, "ok": rate is not None and rate >= floor}

def slo_thresholds(expressions: list[str], mode: str) -> list[Threshold]:
    """The SLO as thresholds, plus the implicit error and drop budgets (1 %) when the SLO names none."""
    thresholds = [parse_threshold(e) for e in expressions]
    for kind, expr in IMPLICIT.items():
        if kind == "drop_rate" and mode != "rate":
            continue
        if not any(t.kind == kind for t in thresholds):
            thresholds.append(parse_threshold(expr))
    return thresholds + [parse_threshold("mismatches == 0")]

@dataclass
class StepResult:
    """What one step measured, wherever its load came from: the search judges it."""

    recorder: Recorder
    completions: CompletionClock  # its successful requests' completion instants, on one clock
    duration_s: float
    stages: dict | None  # Triton's per-model statistics over the step
    interrupted: bool
    client: dict | None
    verification: dict  # {"checked", "mismatches"} of the step
    class_verification: dict[str, dict] = field(default_factory=dict)  # the same per request class
    partial: str | None = None  # why part of the load was not generated (a lost cluster agent): the step is re-run


class StepRunner(Protocol):
    """Runs one capacity step's phase and measures it (here: LocalSteps; over a Ray cluster's agents: ClusterSteps)."""

    async def run(self, phase: Executor) -> StepResult: ...

    def stop(self) -> None: ...


class LocalSteps:
    """Steps run by one engine in this process, against the opened target (a cluster agent runs its share so)."""

    def __init__(self, scenario: Scenario, target: Target, verifier=None, job_stream: int = 0):
        self.scenario, self.target, self.verifier, self.job_stream = scenario, target, verifier, job_stream
        self.engine: Engine | None = None
        self.recorder: Recorder | None = None

    async def run(self, phase: Executor, start_at_ns: int | None = None) -> StepResult:
        """Run `phase` (from `start_at_ns` on this process's perf_counter clock, if given) and measure it."""
        recorder, clock = Recorder(), CompletionClock()
        self.recorder = recorder
        self.engine = engine = Engine(replace(self.scenario, phases=[phase]), self.target, recorder,
                                      verifier=self.verifier, observers=[clock], job_stream=self.job_stream)
        if start_at_ns is not None:
            await asyncio.sleep(max(0.0, (start_at_ns - time.perf_counter_ns()) / 1e9))
        usage = ClientUsage()
        run = await engine.run()
        client = usage.finish(run.phases[0].scheduled, recorder, engine)
        name, verifier = phase.name, self.verifier
        verification = verifier.phase_summary(name) if verifier else {"checked": 0, "mismatches": 0}
        classes = {c: verifier.class_summary({name}, c) for c in recorder.classes({name})} if verifier else {}
        return StepResult(recorder, clock, run.phases[0].duration_s, run.phases[0].stages, run.interrupted, client,
                          verification, classes)

    def stop(self) -> None:
        if self.engine is not None:
            self.engine.stop()


class CapacitySearch:
    """Runs the steps (through `steps`: here or over cluster agents); `steps` keeps every run's figures."""

    def __init__(self, scenario: Scenario, runner: StepRunner, config: CapacityConfig, slo: list[str], console=None):
        self.scenario, self.runner, self.config, self.console = scenario, runner, config, console
        self.slo_expressions = slo
        self.thresholds = slo_thresholds(slo, config.mode)
        self.steps: list[dict] = []
        self._index = 0

    def phase(self, load: float, name: str) -> Executor:
        """The phase one step runs at `load`."""
        duration = self.config.step_duration_s
        if self.config.mode == "rate":
            duration = max(duration, self.config.min_requests / load)
            return ConstantArrivalRate(name=name, rate=load, duration_s=duration,
                                       max_in_flight=self.config.max_in_flight)
        return ConstantConcurrency(name=name, concurrency=int(load), duration_s=duration)

    async def _step(self, load: float, repeat: int, warmup: bool = False) -> dict:
        self._index += 1
        name = f"warm-up-{load:g}" if warmup else f"step-{self._index}"
        measured = await self.runner.run(self.phase(load, name))
        recorder, seconds, verification = measured.recorder, measured.duration_s, measured.verification
        scope = figures(recorder, {name}, seconds, goodput=has_slo(self.scenario))

        def mismatches(request_class: str | None) -> int:
            if request_class is None:
                return verification["mismatches"]
            return measured.class_verification.get(request_class, {}).get("mismatches", 0)

        results = [r.to_json() for r in evaluate(self.thresholds, recorder, {name}, seconds, mismatches)]
        completion_rate = measured.completions.rate_per_s()
        if self.config.mode == "rate":  # keeping up: a backlog that grows within the step shows here first
            results.append(keep_up_result(load, completion_rate))
        step = {"step": self._index, "mode": self.config.mode, "load": load, "repeat": repeat,
                "warmup": warmup, **scope.to_json(), "achieved_requests_per_s": scope.throughput.requests_per_s,
                "verification": verification, "slo": results, "passed": all(r["ok"] for r in results),
                "stages": measured.stages, "interrupted": measured.interrupted, "client": measured.client}
        if self.config.mode == "rate":
            step["rate_per_s"], step["completion_rate_per_s"] = load, completion_rate
        else:
            step["concurrency"] = int(load)
        if measured.partial:
            step["partial"] = measured.partial
        self.steps.append(step)
        if self.console is not None:
            self.console.print(describe_step(step), soft_wrap=True)
        return step

    async def _vote(self, load: float, repeat: int) -> bool:
        """One run of `load`; a step cut short (a lost agent) does not vote: it runs again."""
        step = await self._step(load, repeat)
        while step.get("partial") and not step["interrupted"]:
            step = await self._step(load, repeat)
        return step["passed"]

    async def _candidate(self, load: float) -> bool:
        """Run `load` `repeats` times; if the runs disagree, one more decides (majority)."""
        votes = [await self._vote(load, r + 1) for r in range(self.config.repeats)]
        if len(set(votes)) > 1 and len(votes) % 2 == 0:
            votes.append(await self._vote(load, len(votes) + 1))
        return sum(votes) * 2 > len(votes)

    @property
    def stopped(self) -> bool:
        return bool(self.steps) and self.steps[-1]["interrupted"]

    async def run(self) -> dict:
        """Search; returns the report's `capacity` section."""
        cfg = self.config
        integer = cfg.mode == "concurrency"
        if cfg.warmup:
            await self._step(cfg.start, 1, warmup=True)
        low, high, load = None, None, cfg.start
        while not self.stopped:
            if not await self._candidate(load):
                high = load
                break
            low = load
            if load >= cfg.max:
                break
            load = min(load * 2, cfg.max)
        while low is not None and high is not None and not self.stopped:
            if (high - low) / low <= cfg.precision or (integer and high - low <= 1):
                break
            middle = (low + high) / 2
            middle = round(middle) if integer else middle
            if await self._candidate(middle):
                low = middle
            else:
                high = middle
        return self._summary(low, high)

    def _summary(self, low: float | None, high: float | None) -> dict:
        passing = [s for s in self.steps if not s["warmup"] and s["load"] == low and s["passed"]
                   and not s.get("partial")]
        knee = max(passing, key=lambda s: s["achieved_requests_per_s"]) if passing else None
        if self.config.mode == "rate":
            max_rate = float(low or 0.0)
        else:
            max_rate = knee["achieved_requests_per_s"] if knee else 0.0
        bound = "not found: the first load already fails" if low is None else (
            f"at least {low:g}: the search stopped at max" if high is None else "the SLO")
        latency_limits = [t.limit for t in self.thresholds if t.stat is not None and t.kind == "latency"]
        return {"mode": self.config.mode, "max_rate_per_s": max_rate,
                **({"max_concurrency": int(low) if low else 0} if self.config.mode == "concurrency" else {}),
                "max_images_per_s": knee["throughput"]["images_per_s"] if knee else 0.0,
                "lowest_failing_load": high, "bounded_by": bound,
                "slo": [t.expr for t in self.thresholds], "slo_limits_ms": latency_limits, "knee": knee,
                "steps": self.steps, "interrupted": self.stopped,
                "settings": {"start": self.config.start, "max": self.config.max,
                             "step_duration_s": self.config.step_duration_s, "repeats": self.config.repeats,
                             "precision": self.config.precision, "max_in_flight": self.config.max_in_flight}}

def describe_step(step: dict) -> str:
    unit = "/s" if step["mode"] == "rate" else " in flight"
    lat = step["latency_ms"]
    verdict = "[green]PASS[/green]" if step["passed"] else "[red]FAIL[/red]"
    failed = [r["expr"] for r in step["slo"] if not r["ok"]]
    return (f"{'warm-up' if step['warmup'] else 'step ' + str(step['step'])}: {step['load']:g}{unit} "
            f"(run {step['repeat']}) → {step['achieved_requests_per_s']:.2f} req/s, "
            f"{step['throughput']['images_per_s']:.2f} img/s, p50 {lat['p50']:.0f} ms, p99 {lat['p99']:.0f} ms, "
            f"errors {step['requests']['errors']}, dropped {step['requests']['dropped']}, mismatches "
            f"{step['verification']['mismatches']} → {verdict}" + (f" ({', '.join(failed)})" if failed else "")
            + (f" [yellow]{warning}[/yellow]" if (warning := warning_line(step.get("client"))) else "")
            + (f" [yellow]partial ({step['partial']}): not counted, run again[/yellow]" if step.get("partial") else ""))


def capacity_report(scenario: Scenario, target: Target, section: dict, started_at: datetime,
                    verification: dict | None = None, cluster: dict | None = None) -> dict:
    """The capacity JSON: the run report's identity keys, `capacity`, and the verification summary (None: disabled);
    `cluster`: a search over cluster agents adds `cluster`, `agents` and `agent_losses` (cluster/capacity.py)."""
    client = combine_clients([{**step["client"], "name": f"step {step['step']}"} for step in section["steps"]
                              if step.get("client")])
    return CapacityReport(
        scenario=scenario.name, target=TargetSection(target.url, target.protocol, target.model),
        started_at=started_at.isoformat(timespec="seconds"),
        finished_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        passed=section["max_rate_per_s"] > 0 and not section["interrupted"],
        capacity=CapacitySection.from_json(section), client=ClientUsageSummary.from_json(client) if client else None,
        verification=Verification.from_json(verification or DISABLED_VERIFICATION),
        **(cluster or {})).to_json()

def describe_capacity(report: dict | CapacityReport, console) -> None:
    """The step table and the verdict."""
    from rich import box
    from rich.table import Table

    report = CapacityReport.from_json(report) if isinstance(report, dict) else report
    section = report.capacity
    slo = " and ".join(section.slo)
    unit = "rate /s" if section.mode == "rate" else "concurrency"
    table = Table(title=f"capacity search · {report.scenario} · SLO: {slo}", box=box.SIMPLE_HEAD, padding=(0, 1))
    for column in ("step", unit, "run", "req/s", "img/s", "p50 ms", "p99 ms", "errors", "dropped", "mismatches",
                   "SLO"):
        table.add_column(column, justify="right")
    knee = section.knee
    for step in section.steps:
        lat, requests = step.figures.latency_ms, step.figures.requests
        table.add_row("warm-up" if step.warmup else str(step.step), f"{step.load:g}", str(step.repeat),
                      f"{step.achieved_requests_per_s:.2f}", f"{step.figures.throughput.images_per_s:.2f}",
                      f"{lat.p50:.0f}", f"{lat.p99:.0f}", str(requests.errors), str(requests.dropped),
                      str(step.verification.mismatches), "pass" if step.passed else "FAIL",
                      style="bold green" if knee is not None and step.step == knee.step else
                      ("dim" if step.warmup else None))
    console.print(table)
    if section.mode == "rate":
        headline = f"capacity: {section.max_rate_per_s:.3g} requests/s"
    else:
        headline = f"capacity: {section.max_concurrency or 0} in flight, {section.max_rate_per_s:.3g} requests/s"
    color = "green" if report.passed else "red"
    console.print(f"[{color}]{headline}[/{color}] ({section.max_images_per_s:.3g} images/s) under {slo}; bounded by "
                  f"{section.bounded_by}" + (f"; the first failing load: {section.lowest_failing_load:g}"
                                             if section.lowest_failing_load is not None else ""), soft_wrap=True)
    for line in verification_lines(report.verification):
        console.print(line, soft_wrap=True)
    if isinstance(report.cluster, dict):
        cluster = report.cluster
        console.print(f"cluster: {cluster['agents']} agents on {cluster['nodes']} nodes of {cluster['address']}, "
                      f"clock offsets within ±{cluster['clock_uncertainty_max_ms']:.2f} ms", soft_wrap=True)
    for loss in report.agent_losses or []:
        console.print(f"[red]AGENT LOST[/red] agent {loss['agent']} on {loss['address']} in step {loss['step']} after "
                      f"{loss['at_s']:.1f}s ({loss['reason']}); the later steps ran on the agents left",
                      soft_wrap=True)
    warning = warning_line(client_json(report.client))
    if warning:
        console.print(f"[yellow]{warning}[/yellow]", soft_wrap=True)
