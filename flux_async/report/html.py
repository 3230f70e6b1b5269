"""The self-contained HTML report: one file, no network — charts inline as SVG, mismatch images as data URIs.

Rendered from the JSON report alone (plus, optionally, the run's .hlog for a full percentile spectrum), so
`run --html`, `capacity --html` and `report html REPORT.json` make the same page.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

from hdrh.histogram import HdrHistogram

from flux_async import __version__
from flux_async.measure.client_usage import warning_line
from flux_async.measure.recorder import new_histogram
from flux_async.report.hlog import read_log
from flux_async.report.hlog import tag as hlog_tag
from flux_async.report.json_report import (
    client_json,
    describe_observed,
    format_ms,
    observed_phrase,
    sampled_stat_ms,
)
from flux_async.report.plots import (
    draw_capacity,
    draw_gpu_memory,
    draw_lag,
    draw_latency,
    draw_spectrum,
    draw_stages,
    draw_throughput,
    gpu_memory_series,
    svg,
)
from flux_async.report.schema import CapacityReport, CapacitySection, Report, ThresholdResult, Verification, load_report
from flux_async.report.typed_json import ABSENT

TEMPLATE = Path(__file__).with_name("templates") / "report.html.j2"
THUMBNAIL_PX = 192


def verdict_reasons(report: dict | Report | CapacityReport) -> list[str]:
    """Why the run failed (each failed check, in words), or what it passed."""
    report = load_report(report)
    if isinstance(report, CapacityReport):
        return _capacity_reasons(report.capacity) + _loss_reasons(report)
    reasons = []
    for result in report.thresholds:
        if not result.ok:
            where = f" in phase {result.phase!r}" if result.phase is not ABSENT else ""
            reasons.append(f"threshold {result.expr}{where} not met: {observed_phrase(result)}")
    verification = report.verification
    if verification.mismatches:
        reasons.append(f"{verification.mismatches} of {verification.checked} images differ from their "
                       "single-prompt runs")
    reasons += [f"unstable references: {problem}" for problem in verification.unstable_references or []]
    if report.interrupted:
        reasons.append(f"the run was interrupted: {report.stop_reason}")
    if report.histogram_overflow:
        reasons.append(f"{report.histogram_overflow} latencies were beyond the histograms' range")
    reasons += [f"fault {f['action']} {f.get('model') or 'server'}: {f['error']}" for f in report.faults or []
                if f.get("error")]
    reasons += _loss_reasons(report)
    if reasons:
        return reasons
    checked = f"; {verification.checked} images verified against their single runs" if verification.enabled else ""
    return [f"all {len(report.thresholds)} thresholds met{checked}"]


def _loss_reasons(report: Report | CapacityReport) -> list[str]:
    """The lost cluster agents, each a reason the verdict failed (unless the scenario said on_agent_loss: continue)."""
    if isinstance(report.cluster, dict) and report.cluster.get("on_agent_loss") == "continue":
        return []
    return [f"agent {loss['agent']} on {loss['address']} lost "
            + (f"in step {loss['step']} " if "step" in loss else "") + f"after {loss['at_s']:.1f} s: {loss['reason']}"
            for loss in report.agent_losses or []]


def _capacity_reasons(section: CapacitySection) -> list[str]:
    if section.interrupted:
        return ["the search was interrupted"]
    if section.max_rate_per_s <= 0:
        return [f"no load met the SLO ({' and '.join(section.slo)})"]
    return [f"capacity {section.max_rate_per_s:.3g} requests/s under {' and '.join(section.slo)}; bounded by "
            f"{section.bounded_by}"]


def hlog_spectrum(report: dict | Report | CapacityReport, hlog: str | Path) -> dict[str, list[list[float]]]:
    """A dense percentile spectrum of the measured phases from the run's interval log (exact HDR sums)."""
    report = load_report(report)
    phases = report.phases if isinstance(report, Report) else []
    metric_of = {hlog_tag(p.name, metric): metric for p in phases if not p.warmup for metric in ("latency", "service")}
    totals: dict[str, HdrHistogram] = {}
    for _, _, tag, histogram in read_log(hlog):
        if tag in metric_of:
            totals.setdefault(metric_of[tag], new_histogram()).add(histogram)
    percentiles = [100 * (1 - 0.5 ** (i / 4)) for i in range(0, 68)]  # 0 … 99.999: 4 points per halving
    return {metric: [[p, sampled_stat_ms(h, f"p{p}")] for p in percentiles]
            for metric, h in totals.items() if h.get_total_count()}


def thumbnail(path: str | Path) -> str | None:
    """A PNG as a data URI, at most THUMBNAIL_PX on a side (nearest-neighbour: pixels stay pixels); None if gone."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX), Image.Resampling.NEAREST)
            buffer = io.BytesIO()
            image.save(buffer, format="PNG")
    except OSError:
        return None
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _gallery(verification: Verification) -> list[dict]:
    """The mismatches whose images were saved (verify.save_mismatches of them), thumbnails inline."""
    return [{**example, "images": {Path(f).stem: thumbnail(f) for f in example["files"] if f.endswith(".png")}}
            for example in verification.mismatch_examples or [] if example.get("files")]


def _charts(report: Report | CapacityReport, spectrum: dict | None) -> dict[str, str]:
    if isinstance(report, CapacityReport):
        return {"capacity": svg(draw_capacity, report, name="capacity", size=(12, 5.2))}
    charts = {"latency": svg(draw_latency, report, name="latency"),
              "spectrum": svg(draw_spectrum, report, spectrum, name="spectrum"),
              "throughput": svg(draw_throughput, report, name="throughput"),
              "lag": svg(draw_lag, report, name="lag")}
    if gpu_memory_series(report.timeline)[1]:
        charts["gpu-memory"] = svg(draw_gpu_memory, report, name="gpu-memory")
    return charts


def _environment():
    """Jinja with autoescaping; lenient about missing keys, so reports of older versions and workers render."""
    import jinja2

    environment = jinja2.Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    environment.filters["ms"] = lambda value: "–" if value is None else format_ms(value)
    environment.filters["observed"] = lambda result: (
        "nothing measured" if result["value"] is None else describe_observed(ThresholdResult.from_json(result)))
    return environment


def render_html(report: dict | Report | CapacityReport, hlog: str | Path | None = None,
                source: str | None = None) -> str:
    """The page as a string. `hlog`: the run's interval log, for the spectrum; `source`: named in the footer."""
    typed = load_report(report)
    spectrum = hlog_spectrum(typed, hlog) if hlog and Path(hlog).is_file() else None
    template = _environment().from_string(TEMPLATE.read_text(encoding="utf-8"))
    phases = typed.phases if isinstance(typed, Report) else []
    stage_charts = {p.name: svg(draw_stages, p, name=f"stages-{i}", size=(12, 1.2 + 0.35 * len(p.stages)))
                    for i, p in enumerate(phases) if p.stages}
    page_data = report if isinstance(report, dict) else typed.to_json()  # the template reads the JSON as it is
    return template.render(report=page_data, kind=typed.kind, reasons=verdict_reasons(typed),
                           tester_warning=warning_line(client_json(typed.client)),
                           charts=_charts(typed, spectrum), stage_charts=stage_charts,
                           gallery=_gallery(typed.verification), spectrum_source=Path(hlog).name if spectrum and hlog
                           else "the JSON report", machine=typed.machine or {}, version=__version__, source=source)


def write_html(report: dict, path: str | Path, hlog: str | Path | None = None, source: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report, hlog, source), encoding="utf-8")
    return path
