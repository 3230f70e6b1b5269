"""The HdrHistogram interval log (.hlog) format: its header, its interval lines, and reading it back.

The header is written here (hdrh's writer formats the start time wrongly): StartTime and BaseTime in seconds since
the epoch, interval timestamps relative to them, as `hdrh.log.HistogramLogReader` expects.
"""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from hdrh.histogram import HdrHistogram
from hdrh.log import HistogramLogReader

from flux_async.measure.recorder import new_histogram

COLUMNS = '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"\n'


def tag(phase: str, metric: str) -> str:
    """An interval's tag: '<phase>:<metric>', the phase's name made safe for the format."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", phase) + ":" + metric


def write_header(file: TextIO, title: str, base_epoch_s: float) -> None:
    """The log's header: `title` as its first comment, then the format version, start and base time, columns."""
    iso = datetime.fromtimestamp(base_epoch_s, timezone.utc).isoformat(timespec="milliseconds")
    file.write(f"#[{title}]\n#[Histogram log format version 1.3]\n"
               f"#[StartTime: {base_epoch_s:.3f} (seconds since epoch), {iso}]\n"
               f"#[BaseTime: {base_epoch_s:.3f} (seconds since epoch)]\n" + COLUMNS)


def write_interval(file: TextIO, tag_: str, start_s: float, length_s: float, histogram: HdrHistogram) -> None:
    """One interval line: its start relative to the base time, its length and max (ms), the encoded histogram."""
    file.write(f"Tag={tag_},{start_s:.3f},{length_s:.3f},{histogram.get_max_value() / 1000:.3f},"
               f"{histogram.encode().decode('ascii')}\n")


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


class HlogWriter:
    """A run's interval log: one tag per phase and metric ('<phase>:<metric>'), values in microseconds."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.start_epoch, self.start_ns = time.time(), time.perf_counter_ns()
        self.file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115  (open for the run, closed by close())
        write_header(self.file, "flux_async interval log: tags are <phase>:<metric>, values in microseconds",
                     self.start_epoch)
        self.file.flush()

    tag = staticmethod(tag)

    def write(self, interval) -> None:
        """Append one interval's histograms; flushed so an interrupted run keeps it."""
        start = max(0.0, (interval.start_ns - self.start_ns) / 1e9)
        length = max(0.0, (interval.end_ns - interval.start_ns) / 1e9)
        for (phase, metric), histogram in sorted(interval.histograms.items()):
            if histogram.get_total_count():
                write_interval(self.file, tag(phase, metric), start, length, histogram)
        self.file.flush()

    def close(self) -> None:
        self.file.close()
