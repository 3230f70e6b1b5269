"""PNG plots from a JSON report: the run (latency over time, percentile spectrum, throughput, GPU memory) and the
capacity search (latency against throughput, the SLO and the knee)."""

from __future__ import annotations

from pathlib import Path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _series(rows: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(row["t"] + row["dt"] / 2, row[key]) for row in rows if row.get(key) is not None]
    return [p[0] for p in points], [p[1] for p in points]


def _gpu_memory(rows: list[dict]) -> tuple[list[float], list[float], str]:
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


def plot_run(report: dict, path: str | Path) -> Path:
    """Four panels: latency over time (p50/p99, corrected and service), the percentile spectrum, throughput over
    time, and GPU memory (or a note that there is none)."""
    plt = _pyplot()
    rows = report.get("timeline", [])
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    (latency_ax, spectrum_ax), (throughput_ax, gpu_ax) = axes
    for key, label, style in (("latency_p50_ms", "p50 corrected", "-"), ("latency_p99_ms", "p99 corrected", "-"),
                              ("service_p50_ms", "p50 service", "--"), ("service_p99_ms", "p99 service", "--")):
        latency_ax.plot(*_series(rows, key), style, label=label)
    latency_ax.set(title="latency per interval", xlabel="time (s)", ylabel="ms")
    latency_ax.legend(fontsize=8)
    for metric, label in (("latency", "corrected (from intended start)"), ("service", "service (from send)")):
        points = report.get("spectrum", {}).get(metric, [])
        points = [(p, v) for p, v in points if p < 100]
        if points:
            spectrum_ax.plot([1 / (1 - p / 100) for p, _ in points], [v for _, v in points], marker="o", label=label)
    spectrum_ax.set_xscale("log")
    ticks = [1, 2, 10, 100, 1000, 10000]
    spectrum_ax.set_xticks(ticks, ["0%", "50%", "90%", "99%", "99.9%", "99.99%"])
    spectrum_ax.set(title="percentile spectrum (measured phases)", xlabel="percentile", ylabel="ms")
    spectrum_ax.legend(fontsize=8)
    throughput_ax.plot(*_series(rows, "requests_per_s"), label="requests/s")
    throughput_ax.plot(*_series(rows, "images_per_s"), label="images/s")
    throughput_ax.set(title="throughput per interval", xlabel="time (s)", ylabel="per second")
    throughput_ax.legend(fontsize=8)
    times, memory, source = _gpu_memory(rows)
    if memory:
        gpu_ax.plot(times, memory)
        gpu_ax.set(title=f"GPU memory used ({source})", xlabel="time (s)", ylabel="GiB")
    else:
        gpu_ax.axis("off")
        gpu_ax.text(0.5, 0.5, report.get("gpu", {}).get("reason") or "no GPU", ha="center", va="center", wrap=True,
                    fontsize=9)
    fig.suptitle(f"flux_async · {report['scenario']} · {report['target']['protocol']} {report['target']['url']}")
    return _save(plt, fig, path)


def _save(plt, fig, path: str | Path) -> Path:
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_capacity(report: dict, path: str | Path) -> Path:
    """Latency (p50, p99) against achieved throughput for every step; passing steps filled, the knee marked."""
    plt = _pyplot()
    capacity = report["capacity"]
    steps = capacity["steps"]
    fig, ax = plt.subplots(figsize=(9, 6))
    x = [s["achieved_requests_per_s"] for s in steps]
    for key, label in (("p50", "p50"), ("p99", "p99")):
        y = [s["latency_ms"][key] for s in steps]
        ax.scatter(x, y, label=f"{label} latency (corrected)", facecolors=["C0" if s["passed"] else "none"
                                                                          for s in steps] if key == "p99" else "C1",
                   edgecolors="C0" if key == "p99" else "C1")
    for threshold in capacity.get("slo_limits_ms", []):
        ax.axhline(threshold, color="red", linestyle=":", label=f"SLO {threshold:g} ms")
    knee = capacity.get("knee")
    if knee:
        ax.axvline(knee["achieved_requests_per_s"], color="green", linestyle="--",
                   label=f"capacity {capacity['max_rate_per_s']:.3g}/s")
    ax.set(title=f"capacity · {report['scenario']} · SLO: {' and '.join(capacity['slo'])}",
           xlabel="achieved throughput (requests/s)", ylabel="latency (ms)")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    return _save(plt, fig, path)
