"""Merging the interval logs of several agents (`report merge`): per tag, the exact sum of their HDR histograms,
and one combined log with every interval on a common time base."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from flux_async.measure.recorder import new_histogram, summarize_ms


@dataclass
class MergedLog:
    totals: dict[str, HdrHistogram] = field(default_factory=dict)
    intervals: list[tuple[float, float, str, HdrHistogram]] = field(default_factory=list)  # (abs start s, len, tag, h)
    files: list[str] = field(default_factory=list)


def read_log(path: str | Path) -> list[tuple[float, float, str, HdrHistogram]]:
    """Every interval of an .hlog: (absolute start in s, length in s, tag, histogram)."""
    reader = HistogramLogReader(str(path), new_histogram())
    intervals = []
    try:
        while (histogram := reader.get_next_interval_histogram()) is not None:
            start = histogram.get_start_time_stamp() / 1000
            length = histogram.get_end_time_stamp() / 1000 - start
            intervals.append((start, length, histogram.get_tag() or "", histogram))
    finally:
        reader.close()
    return intervals


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
    from datetime import datetime, timezone

    base = min((start for start, _, _, _ in merged.intervals), default=0.0)
    iso = datetime.fromtimestamp(base, timezone.utc).isoformat(timespec="milliseconds")
    with open(path, "w", encoding="utf-8") as out:
        out.write(f"#[flux_async merged interval log of {len(merged.files)} files: tags are <phase>:<metric>, "
                  f"values in microseconds]\n#[Histogram log format version 1.3]\n"
                  f"#[StartTime: {base:.3f} (seconds since epoch), {iso}]\n#[BaseTime: {base:.3f} (seconds since "
                  'epoch)]\n"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n')
        for start, length, tag, histogram in merged.intervals:
            out.write(f"Tag={tag},{start - base:.3f},{length:.3f},{histogram.get_max_value() / 1000:.3f},"
                      f"{histogram.encode().decode('ascii')}\n")


def summary(merged: MergedLog) -> dict[str, dict]:
    """Per tag: sample count and the report's percentiles in ms."""
    return {tag: {"count": h.get_total_count(), **summarize_ms(h)} for tag, h in sorted(merged.totals.items())}
