"""The run as a time series: one row per interval (latency and service percentiles, throughput, errors, and the
samplers' readings), kept in the report for plots and the HTML report."""

from __future__ import annotations

from .stats import Counters, Interval, new_histogram, stat_ms


class Timeline:
    """An interval listener collecting rows; times are seconds from the run's start."""

    def __init__(self, start_ns: int | None = None):
        self.start_ns, self.rows = start_ns, []

    def add(self, interval: Interval) -> None:
        self.start_ns = self.start_ns if self.start_ns is not None else interval.start_ns
        seconds = (interval.end_ns - interval.start_ns) / 1e9
        if seconds <= 0:
            return
        row = {"t": round((interval.start_ns - self.start_ns) / 1e9, 3), "dt": round(seconds, 3),
               "phases": sorted(interval.counters)}
        total = Counters()
        for counters in interval.counters.values():
            total.add(counters)
        row.update({"sent": total.sent, "ok": total.ok, "errors": total.errors, "dropped": total.dropped,
                    "requests_per_s": round(total.ok / seconds, 4), "images_per_s": round(total.images_ok / seconds, 4)})
        for metric in ("latency", "service", "lag"):
            merged = None
            for (_, name), histogram in interval.histograms.items():
                if name == metric:
                    merged = merged or new_histogram()
                    merged.add(histogram)
            for stat in ("p50", "p99"):
                row[f"{metric}_{stat}_ms"] = stat_ms(merged, stat)
        for name, reading in interval.samples.items():
            if reading is not None:
                row[name] = reading
        self.rows.append(row)
