"""The run as a time series: one row per interval (latency and service percentiles, throughput, errors, and the
samplers' readings), kept in the report for plots and the HTML report.

Rates are always taken over an interval's real length. The engine merges a run's last, shorter interval into the
one before it, and `combine` (several processes' rows) takes each process's rate over its own intervals' lengths:
no row reports a rate computed over a stub as if it were a full interval.
"""

from __future__ import annotations

from collections import defaultdict

from flux_async.measure.recorder import Counters, Interval, new_histogram, stat_ms

COUNTS = ("sent", "ok", "errors", "dropped", "images")


def _row(t: float, dt: float, counts: dict[str, int], requests_per_s: float, images_per_s: float,
         histograms: dict, **fields) -> dict:
    """One timeline row: counts, rates, `fields`, then p50 and p99 of latency, service and lag (ms; None without
    samples) from `histograms` (per metric)."""
    row = {"t": t, "dt": dt, **counts, "requests_per_s": round(requests_per_s, 4),
           "images_per_s": round(images_per_s, 4), **fields}
    for metric in ("latency", "service", "lag"):
        for stat in ("p50", "p99"):
            row[f"{metric}_{stat}_ms"] = stat_ms(histograms.get(metric), stat)
    return row


class Timeline:
    """An interval listener collecting rows; times are seconds from the run's start."""

    def __init__(self, start_ns: int | None = None):
        self.start_ns = start_ns
        self.rows: list[dict] = []

    def add(self, interval: Interval) -> None:
        self.start_ns = self.start_ns if self.start_ns is not None else interval.start_ns
        seconds = (interval.end_ns - interval.start_ns) / 1e9
        if seconds <= 0:
            return
        total = Counters()
        for counters in interval.counters.values():
            total.add(counters)
        merged: dict = {}
        for (_, name), histogram in interval.histograms.items():
            merged.setdefault(name, new_histogram()).add(histogram)
        counts = {"sent": total.sent, "ok": total.ok, "errors": total.errors, "dropped": total.dropped,
                  "images": total.images_ok}
        row = _row(round((interval.start_ns - self.start_ns) / 1e9, 3), round(seconds, 3), counts,
                   total.ok / seconds, total.images_ok / seconds, merged, phases=sorted(interval.counters))
        for name, reading in interval.samples.items():
            if name == "loop_cpu_s":  # the engine's reading: its loop thread's CPU in this interval
                row["loop_busy"] = round(reading / seconds, 3)
            elif reading is not None:
                row[name] = reading
        self.rows.append(row)


def combine(parts: list[tuple[float, list[dict], list]], interval_s: float = 1.0) -> list[dict]:
    """One timeline from several processes: each part is (the epoch of its t = 0, its rows, its .hlog intervals as
    (epoch start, length, tag, histogram)). Rows fall on a common grid by their midpoints and each .hlog interval
    goes with its own process's row that starts nearest to it; counts add up, histograms add exactly, and each
    process's rate is its count over its own rows' lengths in that cell, summed over processes."""
    if not parts:
        return []
    base = min(epoch for epoch, _, _ in parts)
    cells: dict[int, dict] = defaultdict(lambda: {"counts": dict.fromkeys(COUNTS, 0), "histograms": {}, "queue": {},
                                                  "rates": defaultdict(lambda: [0, 0, 0.0])})
    for process, (epoch, rows, logged) in enumerate(parts):
        placed = []  # (absolute start, cell index) of this process's rows
        for row in rows:
            index = int((epoch + row["t"] + row["dt"] / 2 - base) // interval_s)
            placed.append((epoch + row["t"], index))
            cell = cells[index]
            for key in COUNTS:
                cell["counts"][key] += row.get(key, 0)
            own = cell["rates"][process]
            own[0] += row.get("ok", 0)
            own[1] += row.get("images", 0)
            own[2] += row["dt"]
            cell["queue"][process] = max(cell["queue"].get(process, 0), row.get("outbound_queue", 0))
        for start, length, tag, histogram in logged:
            index = min(placed, key=lambda p: abs(p[0] - start))[1] if placed else \
                int((start + length / 2 - base) // interval_s)
            cells[index]["histograms"].setdefault(tag.rsplit(":", 1)[-1], new_histogram()).add(histogram)
    result = []
    for index in sorted(cells):
        cell = cells[index]
        rates = [(ok / seconds, images / seconds) for ok, images, seconds in cell["rates"].values() if seconds > 0]
        result.append(_row(round(index * interval_s, 3), interval_s, cell["counts"], sum(r for r, _ in rates),
                           sum(i for _, i in rates), cell["histograms"], outbound_queue=sum(cell["queue"].values())))
    return result
