"""Merging the interval logs of several agents (`report merge`): per tag, the exact sum of their HDR histograms,
and one combined log with every interval on a common time base."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hdrh.histogram import HdrHistogram

from flux_async.measure.recorder import new_histogram, summarize_ms
from flux_async.report.hlog import read_log, write_header, write_interval


@dataclass
class MergedLog:
    totals: dict[str, HdrHistogram] = field(default_factory=dict)
    intervals: list[tuple[float, float, str, HdrHistogram]] = field(default_factory=list)  # (abs start s, len, tag, h)
    files: list[str] = field(default_factory=list)


def merge_logs(paths: list[str | Path]) -> MergedLog:
    """Add the logs' histograms per tag (HDR histograms add exactly) and keep every interval."""
    merged = MergedLog(files=[str(p) for p in paths])
    for path in paths:
        for start, length, tag, histogram in read_log(path):
            total = merged.totals.setdefault(tag, new_histogram())
            total.add(histogram)
            merged.intervals.append((start, length, tag, histogram))
    merged.intervals.sort(key=lambda item: (item[0], item[2]))
    return merged


def write_log(merged: MergedLog, path: str | Path) -> None:
    """One .hlog holding every agent's intervals, relative to the earliest start."""
    base = min((start for start, _, _, _ in merged.intervals), default=0.0)
    with open(path, "w", encoding="utf-8") as out:
        write_header(out, f"flux_async merged interval log of {len(merged.files)} files: tags are <phase>:<metric>, "
                          "values in microseconds", base)
        for start, length, tag, histogram in merged.intervals:
            write_interval(out, tag, start - base, length, histogram)


def summary(merged: MergedLog) -> dict[str, dict]:
    """Per tag: sample count and the report's percentiles in ms."""
    return {tag: {"count": h.get_total_count(), **summarize_ms(h)} for tag, h in sorted(merged.totals.items())}


def add_by_interval(logs: list[list[tuple[float, float, str, HdrHistogram]]],
                    interval_s: float) -> list[tuple[float, float, str, HdrHistogram]]:
    """Agents' intervals on one synchronized grid (start offsets in s from the common start), added by interval index
    and tag: one histogram per interval and tag holding every agent's samples, exactly."""
    cells: dict[tuple[int, str], list] = {}
    for log in logs:
        for start, length, tag, histogram in log:
            index = round(start / interval_s)
            cell = cells.setdefault((index, tag), [index * interval_s, length, new_histogram()])
            cell[1] = max(cell[1], length)
            cell[2].add(histogram)
    return [(start, length, tag, histogram) for (_, tag), (start, length, histogram) in sorted(cells.items())]


def parse_intervals(text: str) -> list[tuple[float, float, str, HdrHistogram]]:
    """The interval lines of an .hlog's text: (start offset s, length s, tag, histogram); headers skipped."""
    intervals = []
    for line in text.splitlines():
        if not line.startswith("Tag="):
            continue
        tag, start, length, _, payload = line[len("Tag="):].split(",", 4)
        histogram = new_histogram()
        histogram.decode_and_add(payload)
        intervals.append((float(start), float(length), tag, histogram))
    return intervals


def write_intervals(intervals: list[tuple[float, float, str, HdrHistogram]], path: str | Path, title: str,
                    base_epoch_s: float) -> None:
    """An .hlog of `intervals` (start offsets from `base_epoch_s`)."""
    with open(path, "w", encoding="utf-8") as out:
        write_header(out, title, base_epoch_s)
        for start, length, tag, histogram in intervals:
            write_interval(out, tag, start, length, histogram)
