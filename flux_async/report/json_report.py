"""Reports of a run: the JSON report (docs/report.md, version 1; types in report/schema.py) and the console table."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from flux_async.load.engine import RunResult
from flux_async.measure.attribution import first_to_queue
from flux_async.measure.client_usage import warning_line
from flux_async.measure.recorder import SERVER_TIMING, Counters, Recorder, stat_ms, summarize_ms
from flux_async.report.schema import (
    ClassScope,
    ClientUsageSummary,
    Figures,
    Images,
    Latency,
    Phase,
    PhaseVerification,
    PromptsFigures,
    Report,
    Requests,
    ServerTiming,
    Target,
    ThresholdResult,
    Throughput,
    Verification,
)
from flux_async.report.typed_json import ABSENT, Absent
from flux_async.scenario.config import Scenario
from flux_async.scenario.thresholds import Threshold, parse_threshold

# Without an error_rate threshold, any error fails the run (say how many are acceptable to allow some).
IMPLICIT_ERROR_THRESHOLD = "error_rate == 0"


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _latency(histogram) -> Latency:
    return Latency(**summarize_ms(histogram))


def figures(recorder: Recorder, phases: set[str], duration_s: float, request_class: str | None = None,
            goodput: bool = False) -> Figures:
    """The report's per-scope figures (requests … errors_by_kind) over `phases`, of one request class or all;
    `goodput` when the workload sets an SLO."""
    counters = recorder.merged_counters(phases, request_class)

    def merged(metric: str, **keys):
        return recorder.merged(metric, phases, request_class=request_class, **keys)

    by_prompts = {}
    for n in recorder.prompts_counts(phases, request_class):
        latency = merged("latency", prompts=n)
        by_prompts[str(n)] = PromptsFigures(latency.get_total_count() if latency else 0, _latency(latency),
                                            _latency(merged("service", prompts=n)))
    ttfr = merged("ttfr")
    server_timing = {}
    for name in recorder.server_timing_names(phases, request_class):
        histogram = merged(SERVER_TIMING + name)
        assert histogram is not None  # the name was recorded in these phases
        server_timing[name] = ServerTiming(**summarize_ms(histogram), count=histogram.get_total_count())
    return Figures(
        duration_s=round(duration_s, 3),
        requests=Requests(counters.sent, counters.ok, counters.errors, counters.dropped),
        images=Images(counters.images_ok),
        throughput=Throughput(_rate(counters.ok, duration_s), _rate(counters.images_ok, duration_s)),
        latency_ms=_latency(merged("latency")),
        service_time_ms=_latency(merged("service")),
        errors_by_kind=dict(sorted(counters.errors_by_kind.items())),
        error_examples=dict(sorted(counters.error_examples.items())) or ABSENT,
        schedule_lag_ms=_latency(merged("lag")),
        by_prompts_per_request=by_prompts,
        time_to_first_response_ms=_latency(ttfr) if ttfr is not None else ABSENT,
        server_timing_ms=server_timing or ABSENT,
        goodput=_goodput(counters) if goodput else ABSENT,
        goodput_per_s=round(_rate(counters.good, duration_s), 4) if goodput else ABSENT)


def _goodput(counters: Counters) -> float | None:
    """The share of requests (sent or dropped) that succeeded within their class's SLO; None without requests."""
    total = counters.sent + counters.dropped
    return round(counters.good / total, 6) if total else None


def _lookup(recorder: Recorder, phases: set[str], duration_s: float, mismatches: int,
            request_class: str | None = None):
    def lookup(kind: str, stat: str | None) -> float | None:
        if stat is not None:
            return stat_ms(recorder.merged(kind, phases, request_class=request_class), stat)
        counters: Counters = recorder.merged_counters(phases, request_class)
        values = {
            "error_rate": counters.errors / counters.sent if counters.sent else None,
            "drop_rate": counters.dropped / (counters.sent + counters.dropped) if counters.sent + counters.dropped
            else None,
            "images_per_s": _rate(counters.images_ok, duration_s), "requests_per_s": _rate(counters.ok, duration_s),
            "errors": counters.errors, "dropped": counters.dropped, "mismatches": mismatches,
            "goodput": _goodput(counters), "goodput_per_s": _rate(counters.good, duration_s),
        }
        return values[kind]

    return lookup


def evaluate(thresholds: list[Threshold], recorder: Recorder, phases: set[str], duration_s: float,
             mismatches: Callable[[str | None], int], phase: str | None = None) -> list[ThresholdResult]:
    """Each threshold's observed value and verdict over `phases` (lasting `duration_s`), over all requests or the
    class it names; `mismatches(class or None)` counts the images that failed verification there."""
    results = []
    for threshold in thresholds:
        lookup = _lookup(recorder, phases, duration_s, mismatches(threshold.request_class), threshold.request_class)
        value, ok = threshold.check(lookup)  # value None: nothing was measured
        results.append(ThresholdResult(threshold.expr, value, ok, phase if phase is not None else ABSENT))
    return results


def _class_scopes(scenario: Scenario, recorder: Recorder, phases: set[str], duration_s: float, verifier,
                  results: list[ThresholdResult]) -> dict[str, ClassScope] | Absent:
    """Each request class's scope over `phases`, with the threshold results scoped to it."""
    names = recorder.classes(phases)
    if not names:
        return ABSENT
    scopes = {}
    for name in names:
        slo = scenario.workload.slo_of(name)
        scope = ClassScope(figures(recorder, phases, duration_s, name, has_slo(scenario)),
                           slo.describe() if slo is not None else None)
        if verifier is not None:
            scope.verification = PhaseVerification.from_json(verifier.class_summary(phases, name))
        scope.thresholds = [r for r in results if parse_threshold(r.expr).request_class == name]
        scopes[name] = scope
    return scopes


def has_slo(scenario: Scenario) -> bool:
    """Whether the workload sets a latency objective (then the figures have goodput)."""
    workload = scenario.workload
    return workload.slo is not None or any(c.settings.slo is not None for c in workload.classes.values())


SPECTRUM = (0, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99, 100)


def spectrum(recorder: Recorder, phases: set[str]) -> dict[str, list[list[float]]]:
    """[percentile, ms] pairs of the latency and service histograms, for the percentile-spectrum plot."""
    result: dict[str, list[list[float]]] = {}
    for metric in ("latency", "service"):
        histogram = recorder.merged(metric, phases)
        if histogram is not None and histogram.get_total_count():
            result[metric] = [[p, sampled_stat_ms(histogram, "max" if p == 100 else f"p{p}")] for p in SPECTRUM]
    return result


def sampled_stat_ms(histogram, stat: str) -> float:
    """`stat_ms` of a histogram known to have samples (never None)."""
    value = stat_ms(histogram, stat)
    assert value is not None
    return value


DISABLED_VERIFICATION = {"enabled": False, "checked": 0, "mismatches": 0}


def run_report(scenario: Scenario, run: RunResult, recorder: Recorder, *, embedded: bool = False,
               verifier=None, timeline: list | None = None, gpu: dict | None = None,
               metrics_url: str | None = None, faults: list | None = None) -> Report:
    """The report of a run. Warm-up phases are reported but left out of the top-level figures (verification counts
    every checked image, warm-up included: a wrong image is wrong in any phase)."""
    measured = [p for p in run.phases if p.started_ns and not p.config.warmup]
    top_phases = {p.name for p in measured}
    verification = Verification.from_json(verifier.summary() if verifier is not None else DISABLED_VERIFICATION)
    top_s, goodput = sum(p.duration_s for p in measured), has_slo(scenario)
    top = figures(recorder, top_phases, top_s, goodput=goodput)
    thresholds = list(scenario.thresholds)
    all_thresholds = thresholds + [t for p in scenario.phases for t in p.thresholds]
    if not any(t.kind == "error_rate" and t.request_class is None for t in all_thresholds):
        thresholds.append(parse_threshold(IMPLICIT_ERROR_THRESHOLD))

    def mismatches_in(phase_names: set[str]) -> Callable[[str | None], int]:
        def count(request_class: str | None) -> int:
            if verifier is None:
                return 0
            if request_class is not None:
                return verifier.class_summary(phase_names, request_class)["mismatches"]
            return sum(verifier.phase_summary(name)["mismatches"] for name in phase_names)
        return count

    # the run's mismatches count every checked image, warm-up included: a wrong image is wrong in any phase
    everything = mismatches_in({p.name for p in run.phases})
    results = evaluate(thresholds, recorder, top_phases, top_s,
                       lambda c: verification.mismatches if c is None else everything(c))
    phases = []
    for phase in run.phases:
        if not phase.started_ns:
            continue
        scope = Phase(phase.name, phase.config.executor, phase.config.warmup, phase.finished,
                      figures(recorder, {phase.name}, phase.duration_s, goodput=goodput))
        scope.extra.update(phase.config.report_fields())  # a trace: its file, lines and skipped lines
        if phase.stages is not None:
            scope.stages, scope.first_to_queue = phase.stages, first_to_queue(phase.stages)
        if verifier is not None:
            scope.verification = PhaseVerification.from_json(verifier.phase_summary(phase.name))
        scope.thresholds = evaluate(phase.config.thresholds, recorder, {phase.name}, phase.duration_s,
                                    mismatches_in({phase.name}), phase.name)
        scope.classes = _class_scopes(scenario, recorder, {phase.name}, phase.duration_s, verifier,
                                      scope.thresholds)
        results += scope.thresholds
        phases.append(scope)
    classes = _class_scopes(scenario, recorder, top_phases, top_s, verifier,
                            [r for r in results if r.phase is ABSENT])
    passed = (all(r.ok for r in results) and not run.interrupted and verification.mismatches == 0
              and not verification.unstable_references and recorder.overflow == 0
              and not any(f["error"] for f in faults or []))
    return Report(scenario=scenario.name, target=Target(run.target_url, run.protocol, run.model),
                  started_at=run.started_at.isoformat(timespec="seconds"), passed=passed, figures=top, phases=phases,
                  classes=classes,
                  verification=verification, thresholds=results, interrupted=run.interrupted,
                  stop_reason=run.stop_reason, wall_time_s=round(run.wall_s, 3), histogram_overflow=recorder.overflow,
                  embedded_server=embedded, spectrum=spectrum(recorder, top_phases), timeline=timeline or [],
                  gpu=gpu or {"available": False, "reason": "not sampled"}, metrics_url=metrics_url,
                  faults=faults if faults is not None else ABSENT)


def build_report(scenario: Scenario, run: RunResult, recorder: Recorder, **options) -> dict:
    """The JSON report of a run (`run_report`'s, as JSON)."""
    return run_report(scenario, run, recorder, **options).to_json()


def write_json(report: dict | Report, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = report if isinstance(report, dict) else report.to_json()
    path.write_text(json.dumps(data, indent=2) + "\n")


def _ms(value: float) -> str:
    return f"{value / 1000:.2f}s" if value >= 1000 else f"{value:.1f}ms"


def stage_table(phase: Phase):
    """Per-model figures from Triton's statistics for one phase (ms per request)."""
    from rich import box
    from rich.table import Table

    assert isinstance(phase.stages, dict)  # called for phases with stages
    slowest = phase.first_to_queue
    title = f"stages in {phase.name!r} (Triton statistics, ms per request)" + (
        f" · queues first: {slowest}" if slowest else "")
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1))
    for column in ("model", "requests", "executions", "avg batch", "batch sizes", "queue", "input", "infer",
                   "output"):
        table.add_column(column, justify="left" if column in ("model", "batch sizes") else "right")
    for model, f in phase.stages.items():
        sizes = " ".join(f"{size}×{count}" for size, count in f["batch_sizes"].items())
        table.add_row(model, str(f["requests"]), str(f["executions"]), f"{f['avg_batch_size']:.2f}", sizes,
                      format_ms(f["queue_ms"]), format_ms(f["compute_input_ms"]), format_ms(f["compute_infer_ms"]),
                      format_ms(f["compute_output_ms"]), style="bold red" if model == slowest else None)
    return table


def class_table(classes: dict[str, ClassScope]):
    """One row per request class over the measured phases: counts, latency, its SLO and goodput, verification."""
    from rich import box
    from rich.table import Table

    table = Table(title="request classes (measured phases; latency in ms from the intended start)",
                  box=box.SIMPLE_HEAD, padding=(0, 1))
    for column in ("class", "sent", "ok", "errors", "dropped", "req/s", "p50", "p99", "max", "slo", "goodput",
                   "checked", "mismatches"):
        table.add_column(column, justify="left" if column in ("class", "slo") else "right")
    for name, scope in classes.items():
        f, verification = scope.figures, scope.verification
        goodput = f"{f.goodput:.1%}" if isinstance(f.goodput, float) else "–"
        table.add_row(name, str(f.requests.sent), str(f.requests.ok), str(f.requests.errors), str(f.requests.dropped),
                      f"{f.throughput.requests_per_s:.2f}", format_ms(f.latency_ms.p50), format_ms(f.latency_ms.p99),
                      format_ms(f.latency_ms.max), scope.slo or "–", goodput,
                      str(verification.checked) if verification else "–",
                      str(verification.mismatches) if verification else "–",
                      style="red" if verification and verification.mismatches else None)
    return table


def format_ms(ms: float) -> str:
    """Milliseconds with three significant figures at most (tables)."""
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 10 else f"{ms:.2f}"


def observed_phrase(result: ThresholdResult) -> str:
    """'observed 2.30s' (or 'nothing measured') for one threshold result."""
    return "nothing measured" if result.value is None else f"observed {describe_observed(result)}"


def describe_observed(result: ThresholdResult) -> str:
    """A threshold result's observed value in the threshold's own unit (ms as 2.30s/450.0ms, rates as %)."""
    assert result.value is not None  # callers say 'nothing measured' instead
    threshold = parse_threshold(result.expr)
    if threshold.stat is not None:
        return _ms(result.value)
    if threshold.kind.endswith("_rate") or threshold.kind == "goodput":
        return f"{result.value:.2%}"
    return f"{result.value:.4g}"


def verification_lines(verification: Verification) -> list[str]:
    """The console's verification lines: counts, the gate, how close the passing images came, the mismatches."""
    if not verification.enabled:
        return [f"verification: off ({verification.note})"] if verification.note else []
    lines = [f"verification: {verification.checked} images checked against their single runs, "
             f"{verification.mismatches} mismatches"
             + (f", {verification.unchecked} unchecked" if verification.unchecked else "")]
    if verification.gate:
        lines.append(f"  gate {verification.gate['description']}")
        if verification.checked > verification.mismatches:
            lines.append(f"  passing images: {verification.gate_explained}")
    for example in (verification.mismatch_examples or [])[:5]:
        difference = "" if example.get("max_abs") is None else f"; max abs diff {example['max_abs']:.3g}"
        lines.append(f"[red]MISMATCH[/red] phase {example['phase']!r} request #{example['request']} item "
                     f"{example['item'] + 1}/{example['prompts_in_request']}: prompt {example['prompt']!r} "
                     f"seed {example['seed']}: {'; '.join(example['reasons'])}{difference}"
                     + (f" → {Path(example['files'][0]).parent}" if example["files"] else ""))
    lines += [f"[red]UNSTABLE[/red] {problem}" for problem in verification.unstable_references or []]
    return lines


def client_json(client: ClientUsageSummary | Absent | None) -> dict | None:
    """A `client` section as measure.client_usage's functions take it."""
    return client.to_json() if client else None


def server_line(server: dict[str, dict[str, str]]) -> str:
    """What the server's models run, from their `flux_model_settings` (one clause per model)."""
    clauses = []
    for model, settings in sorted(server.items()):
        on = [name for name, value in settings.items() if value == "on"]
        precision = settings.get("precision", "auto")
        clauses.append(f"{model} {settings.get('dtype', '?')}" + (f" {precision}" if precision != "auto" else "")
                       + (f" ({', '.join(on)})" if on else ""))
    return "; ".join(clauses)


def print_summary(report: dict | Report, console) -> None:
    """Two tables (requests; latency), one row per phase and the measured total, then thresholds and the verdict."""
    from rich import box
    from rich.table import Table

    report = Report.from_json(report) if isinstance(report, dict) else report
    target = report.target
    title = f"flux_async · {report.scenario} · {target.protocol} {target.url} · {target.model}"
    counts = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1))
    latency = Table(title="latency in ms: from the intended start (corrected for coordinated omission); "
                          "svc: service time, from the actual send", box=box.SIMPLE_HEAD, padding=(0, 1))
    for column in ("phase", "executor", "time", "sent", "ok", "errors", "dropped", "req/s", "img/s"):
        counts.add_column(column, justify="left" if column in ("phase", "executor") else "right")
    for column in ("phase", "p50", "p90", "p99", "p99.9", "max", "mean", "svc p50", "svc p99"):
        latency.add_column(column, justify="left" if column == "phase" else "right")
    scopes = [(p.name + (" (warm-up)" if p.warmup and "warm" not in p.name.lower() else ""), p.executor, p.figures,
               "dim" if p.warmup else None) for p in report.phases] + [("total", "", report.figures, "bold")]
    for label, executor, scope, style in scopes:
        req, lat, svc = scope.requests, scope.latency_ms, scope.service_time_ms
        counts.add_row(label, executor, f"{scope.duration_s:.1f}s", str(req.sent), str(req.ok), str(req.errors),
                       str(req.dropped), f"{scope.throughput.requests_per_s:.2f}",
                       f"{scope.throughput.images_per_s:.2f}", style=style)
        latency.add_row(label, *(format_ms(v) for v in (lat.p50, lat.p90, lat.p99, lat.p999, lat.max, lat.mean)),
                        format_ms(svc.p50), format_ms(svc.p99), style=style)
    console.print(counts)
    console.print(latency)
    if report.classes:
        console.print(class_table(report.classes))
    for phase in report.phases:
        if phase.stages and not phase.warmup:
            console.print(stage_table(phase))
    print_line = lambda text: console.print(text, soft_wrap=True)  # noqa: E731  (one line per item, for grep)
    if isinstance(report.figures.goodput, float):
        print_line(f"goodput: {report.figures.goodput:.2%} of requests succeeded within their class's SLO "
                   f"({report.figures.goodput_per_s:.3g}/s)")
    for name, timing in (report.figures.server_timing_ms or {}).items():
        print_line(f"server timing {name} (ms, from the responses' Server-Timing): p50 {format_ms(timing.p50)}, "
                   f"p90 {format_ms(timing.p90)}, p99 {format_ms(timing.p99)}, max {format_ms(timing.max)} "
                   f"({timing.count} responses)")
    if report.figures.errors_by_kind:
        print_line("errors: " + ", ".join(f"{k} × {v}" for k, v in report.figures.errors_by_kind.items()))
        for kind, message in (report.figures.error_examples or {}).items():
            print_line(f"  first {kind}: {message}")
    for result in report.thresholds:
        mark = "[green]✓[/green]" if result.ok else "[red]✗[/red]"
        where = f" [{result.phase}]" if result.phase is not ABSENT else ""
        print_line(f"{mark} {result.expr}{where}  ({observed_phrase(result)})")
    for fault in report.faults or []:
        what = f"{fault['action']} {fault['model'] or 'server'}"
        if fault["applied_s"] is None:
            print_line(f"[red]FAULT[/red] {what}: not applied ({fault['error']})")
            continue
        recovery = "no success after it" if fault.get("recovery_s") is None else f"recovered {fault['recovery_s']:.2f}s"
        kinds = ", ".join(f"{k} × {v}" for k, v in fault.get("errors_by_kind_in_window", {}).items()) or "none"
        print_line(f"FAULT {what} from {fault['applied_s']:.1f}s to {fault['reverted_s']:.1f}s: "
                   f"{fault.get('requests_in_window', 0)} requests ended in the window, errors {kinds}; revert took "
                   + ("?" if fault["revert_took_s"] is None else f"{fault['revert_took_s']:.1f}s")
                   + f", {recovery} after the revert began"
                   + (f" [red]({fault['error']})[/red]" if fault["error"] else ""))
    if report.server:
        print_line("server: " + server_line(report.server))
    for line in verification_lines(report.verification):
        print_line(line)
    client = report.client
    if client:
        lag = None if client.schedule_lag_p99_ms is ABSENT else client.schedule_lag_p99_ms
        print_line(f"client: {client.cpu_us_per_request or 0:.0f} µs CPU per request, event loop busy "
                   f"{client.loop_busy or 0:.0%} (busiest interval {client.loop_busy_max or 0:.0%}), "
                   "schedule lag p99 " + ("–" if lag is None else f"{lag:.2f} ms")
                   + f", outbound queue max {client.outbound_queue_max or 0}")
    warning = warning_line(client_json(client))
    if warning:
        print_line(f"[yellow]{warning}[/yellow]")
    if report.interrupted:
        print_line(f"[yellow]interrupted ({report.stop_reason}): the report covers the requests made until the "
                   "stop[/yellow]")
    if isinstance(report.cluster, dict):
        cluster = report.cluster
        print_line(f"cluster: {cluster['agents']} agents on {cluster['nodes']} nodes of {cluster['address']}, clock "
                   f"offsets within ±{cluster['clock_uncertainty_max_ms']:.2f} ms")
    for loss in report.agent_losses or []:
        print_line(f"[red]AGENT LOST[/red] agent {loss['agent']} on {loss['address']} after {loss['at_s']:.1f}s "
                   f"({loss['reason']}); {loss['in_flight_lost']} requests in flight lost, later intervals partial")
    verdict = "[green]PASSED[/green]" if report.passed else "[red]FAILED[/red]"
    console.print(f"{verdict}  {report.figures.requests.ok} ok / {report.figures.requests.sent} sent, "
                  f"{report.figures.images.ok} images in {report.figures.duration_s:.1f}s")
