"""Charts from a JSON report, one drawing function per panel: PNG files for `--plot` (the run's four panels; the
capacity search) and inline SVG for the HTML report."""

from __future__ import annotations

import io
from pathlib import Path

from flux_async.report.schema import CapacityReport, Phase, Report, load_report


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(row["t"] + row["dt"] / 2, row[key]) for row in rows if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def gpu_memory_series(rows: list[dict]) -> tuple[list[float], list[float], str]:
    """GPU memory used (GiB, summed over GPUs) per interval: from pynvml if sampled, else Triton's nv_gpu_* gauges."""
    times, values, source = [], [], ""
    for row in rows:
        if row.get("gpu"):
            used, source = sum(g["memory_used_bytes"] for g in row["gpu"]), "pynvml"
        elif row.get("metrics", {}).get("nv_gpu_memory_used_bytes"):
            used, source = sum(row["metrics"]["nv_gpu_memory_used_bytes"].values()), "Triton nv_gpu_memory_used_bytes"
        else:
            continue
        times.append(row["t"] + row["dt"] / 2)
        values.append(used / 2**30)
    return times, values, source


def draw_latency(ax, report: Report) -> None:
    """p50 and p99 per interval, corrected (from the intended start) and service (from the send)."""
    rows = report.timeline
    for key, label, style in (("latency_p50_ms", "p50 corrected", "-"), ("latency_p99_ms", "p99 corrected", "-"),
                              ("service_p50_ms", "p50 service", "--"), ("service_p99_ms", "p99 service", "--")):
        ax.plot(*_series(rows, key), style, label=label)
    ax.set(title="latency per interval", xlabel="time (s)", ylabel="ms")
    ax.legend(fontsize=8)


def draw_spectrum(ax, report: Report, spectrum: dict | None = None) -> None:
    """Latency against percentile with the tail stretched (x = 1 / (1 - percentile)), corrected and service."""
    spectrum = spectrum if spectrum is not None else report.spectrum
    for metric, label in (("latency", "corrected (from intended start)"), ("service", "service (from send)")):
        points = [(p, v) for p, v in spectrum.get(metric, []) if p < 100]
        if points:
            ax.plot([1 / (1 - p / 100) for p, _ in points], [v for _, v in points],
                    marker="o" if len(points) < 40 else None, label=label)
    ax.set_xscale("log")
    ax.set_xticks([1, 2, 10, 100, 1000, 10000], ["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    ax.set(title="percentile spectrum (measured phases)", xlabel="percentile", ylabel="ms")
    ax.legend(fontsize=8)


def _lines(ax, report: Report, series: tuple[tuple[str, str], ...], title: str, ylabel: str) -> None:
    rows = report.timeline
    for key, label in series:
        ax.plot(*_series(rows, key), label=label)
    ax.set(title=title, xlabel="time (s)", ylabel=ylabel)
    ax.legend(fontsize=8)


def draw_throughput(ax, report: Report) -> None:
    _lines(ax, report, (("requests_per_s", "requests/s"), ("images_per_s", "images/s")), "throughput per interval",
           "per second")


def draw_lag(ax, report: Report) -> None:
    """Send time minus intended start per interval: how far the client itself fell behind its schedule."""
    _lines(ax, report, (("lag_p50_ms", "p50"), ("lag_p99_ms", "p99")), "schedule lag per interval", "ms")


def draw_gpu_memory(ax, report: Report) -> None:
    times, memory, source = gpu_memory_series(report.timeline)
    if memory:
        ax.plot(times, memory)
        ax.set(title=f"GPU memory used ({source})", xlabel="time (s)", ylabel="GiB")
    else:
        ax.axis("off")
        ax.text(0.5, 0.5, report.gpu.get("reason") or "no GPU", ha="center", va="center", wrap=True,
                fontsize=9)


STAGE_PARTS = (("queue_ms", "queue"), ("compute_input_ms", "input"), ("compute_infer_ms", "infer"),
               ("compute_output_ms", "output"))


def draw_stages(ax, phase: Phase) -> None:
    """Per model, ms per request from Triton's statistics, stacked: queue, input, infer, output."""
    stages = phase.stages
    assert isinstance(stages, dict)  # drawn for phases with stages
    models = list(stages)[::-1]  # top to bottom in the order of the report
    left = [0.0] * len(models)
    for key, label in STAGE_PARTS:
        values = [stages[m][key] for m in models]
        ax.barh(models, values, left=left, label=label)
        left = [a + b for a, b in zip(left, values)]
    slowest = phase.first_to_queue
    ax.set(title=f"stages in {phase.name!r} (ms per request)" + (f" · queues first: {slowest}" if slowest else ""),
           xlabel="ms")
    ax.legend(fontsize=8, ncols=4, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)  # below the axis


def draw_capacity(ax, report: CapacityReport) -> None:
    """Latency (p50, p99) against achieved throughput for every step; passing steps filled, the knee marked."""
    capacity = report.capacity
    steps = capacity.steps
    x = [s.achieved_requests_per_s for s in steps]
    for key in ("p50", "p99"):
        color = "C0" if key == "p99" else "C1"
        faces = [color if s.passed else "none" for s in steps]
        ax.scatter(x, [getattr(s.figures.latency_ms, key) for s in steps], label=f"{key} latency (corrected)",
                   facecolors=faces, edgecolors=color)
    for threshold in capacity.slo_limits_ms:
        ax.axhline(threshold, color="red", linestyle=":", label=f"SLO {threshold:g} ms")
    knee = capacity.knee
    if knee:
        ax.axvline(knee.achieved_requests_per_s, color="green", linestyle="--",
                   label=f"capacity {capacity.max_rate_per_s:.3g}/s")
    ax.set(title=f"capacity · {report.scenario} · SLO: {' and '.join(capacity.slo)}",
           xlabel="achieved throughput (requests/s)", ylabel="latency (ms)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)


def plot_run(report: dict | Report, path: str | Path) -> Path:
    """Four panels: latency over time, the percentile spectrum, throughput over time, GPU memory (or why none)."""
    typed = load_report(report)
    assert isinstance(typed, Report)  # the report of `run`
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    for ax, draw in zip(axes.flat, (draw_latency, draw_spectrum, draw_throughput, draw_gpu_memory)):
        draw(ax, typed)
    fig.suptitle(f"flux_async · {typed.scenario} · {typed.target.protocol} {typed.target.url}")
    return _save(plt, fig, path)


def plot_capacity(report: dict | CapacityReport, path: str | Path) -> Path:
    typed = load_report(report)
    assert isinstance(typed, CapacityReport)  # the report of `capacity`
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 6))
    draw_capacity(ax, typed)
    return _save(plt, fig, path)


def _save(plt, fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def svg(draw, *args, name: str, size: tuple[float, float] = (7.5, 3.6)) -> str:
    """One panel as an inline <svg> element: text kept as text (no fonts embedded), ids unique per `name`."""
    plt = _pyplot()
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": name, "font.family": "sans-serif"}):
        fig, ax = plt.subplots(figsize=size)
        draw(ax, *args)
        fig.tight_layout()
        buffer = io.StringIO()
        fig.savefig(buffer, format="svg", bbox_inches="tight")
        plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog and doctype: the element goes inside HTML
