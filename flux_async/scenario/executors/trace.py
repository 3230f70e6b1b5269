"""trace: replay a JSONL trace (scenario/trace_file.py, docs/trace.md), each request at its own timestamp.

    - {name: replay, executor: trace, file: traces/example.jsonl, speed: 2, start: 10s, end: 70s, loop: false}

A line at `timestamp` ms is intended to start (timestamp - start) / speed after the phase start: latency is measured
from there, as for every open-loop executor, so it stays corrected for coordinated omission. The file is checked
whole when the scenario is read (a bad line is a scenario error naming file:line, unless `skip_bad_lines`), then
streamed again while the phase runs: memory stays constant whatever its length.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flux_async.scenario.executors.base import OpenLoop, capped
from flux_async.scenario.reader import Reader, boolean, number, parse_duration
from flux_async.scenario.trace_file import TraceError, TraceFile, TraceLine, TraceSummary


@dataclass(kw_only=True)
class TraceReplay(OpenLoop):
    executor = "trace"
    required = ("file",)
    optional = ("speed", "start", "end", "loop", "skip_bad_lines")

    file: Path  # resolved against the scenario file's folder
    file_name: str = ""  # as the scenario wrote it: errors name it
    speed: float = 1.0  # 2: twice as fast (timestamps divided by 2)
    start_s: float = 0.0  # the offset into the trace where the phase starts (earlier lines are skipped)
    end_s: float | None = None  # the offset where it ends (lines from there on are left out)
    loop: bool = False  # start over at `start` when the window ends, every (end - start) (or last - start)
    skip_bad_lines: bool = False  # count and leave out bad lines instead of refusing the trace
    summary: TraceSummary | None = field(default=None, compare=False, repr=False)  # from the check at parse time

    @classmethod
    def parse_own(cls, r: Reader, data: dict, path: str) -> dict[str, Any]:
        own: dict[str, Any] = {
            "speed": r.get(data, "speed", path, number, 1.0, lambda v: v > 0,
                           "must be a number > 0 (2: twice as fast)"),
            "start_s": r.get(data, "start", path, parse_duration, 0.0, lambda v: v >= 0,
                             "must be a duration >= 0 into the trace, e.g. 30s"),
            "end_s": r.get(data, "end", path, parse_duration, None, lambda v: v > 0,
                           "must be a duration > 0 into the trace, e.g. 90s"),
            "loop": r.get(data, "loop", path, boolean, False, expect="must be true or false"),
            "skip_bad_lines": r.get(data, "skip_bad_lines", path, boolean, False, expect="must be true or false")}
        name = data.get("file")
        if not isinstance(name, str) or not name.strip():
            r.problem(f"{path}.file", f"must be the path of a JSONL trace, got {name!r}")
            return {**own, "file": Path(), "file_name": str(name)}
        file = (r.base_dir / name).resolve()
        own.update(file=file, file_name=name)
        try:  # the whole file, now: a bad line stops the run before it starts (constant memory)
            own["summary"] = TraceFile(file, name, own["skip_bad_lines"]).check()
        except TraceError as exc:
            r.problem(f"{path}.file", str(exc))
        return own

    def validate(self, r: Reader, path: str) -> None:
        if self.end_s is not None and self.end_s <= self.start_s:
            r.problem(f"{path}.end", f"must be after start ({self.start_s:g} s), got {self.end_s:g} s")
        if self.summary is None:
            return
        if self.start_s * 1000 > self.summary.last_ms:
            r.problem(f"{path}.start", f"is after the trace's last request ({self.summary.last_ms / 1000:g} s)")
        if self.loop:
            if not (self.duration_s or self.requests):
                r.problem(path, "a looping trace needs a duration or a requests count")
            if self.period_ms() <= 0:
                r.problem(f"{path}.loop", "every request of the window has the same timestamp: give end, the "
                                          "period to repeat it with")

    def period_ms(self) -> float:
        """The trace time one pass over the window covers: end - start, or the last timestamp - start."""
        last = self.summary.last_ms if self.summary is not None else 0.0
        end = self.end_s * 1000 if self.end_s is not None else last
        return max(0.0, end - self.start_s * 1000)

    def planned_s(self, cap_s: float | None) -> float | None:
        limit = capped(self.duration_s, cap_s)
        if self.loop:
            return limit
        last = self.summary.last_ms if self.summary is not None else 0.0
        end = min(last, self.end_s * 1000) if self.end_s is not None else last
        length = max(0.0, end - self.start_s * 1000) / 1000 / self.speed
        return length if limit is None else min(length, limit)

    def arrivals(self, cap_s: float | None) -> Iterator[float]:
        return (offset for offset, _ in self.requests_of(cap_s))

    def schedule(self, cap_s: float | None) -> Iterator[tuple[float, TraceLine | None]]:
        return self.requests_of(cap_s)

    def requests_of(self, cap_s: float | None) -> Iterator[tuple[float, TraceLine]]:
        """(intended offset in seconds, line) of this generator's requests, read from the file as they are due."""
        limit = capped(self.duration_s, cap_s)
        start_ms, end_ms = self.start_s * 1000, None if self.end_s is None else self.end_s * 1000
        period_ms, index, count = self.period_ms(), *self.stripe
        trace = TraceFile(self.file, self.file_name, self.skip_bad_lines)
        position = sent = 0  # position: the line's place in the window (over every generator); sent: this one's
        for iteration in range(2**62 if self.loop else 1):
            lines, found = trace.lines(), False
            try:
                for line in lines:
                    if line.timestamp_ms < start_ms:
                        continue
                    if end_ms is not None and line.timestamp_ms >= end_ms:
                        break
                    found, position = True, position + 1
                    if (position - 1) % count != index:
                        continue
                    offset = (line.timestamp_ms - start_ms + iteration * period_ms) / 1000 / self.speed
                    if (limit is not None and offset >= limit) or (self.requests is not None
                                                                   and sent >= self.requests):
                        return
                    sent += 1
                    yield offset, line
            finally:
                lines.close()
            if not found or period_ms <= 0:
                return

    def files(self) -> list[Path]:
        return [self.file]

    def relocated(self, paths: dict[Path, Path]) -> TraceReplay:
        return replace(self, file=paths.get(self.file, self.file))

    def report_fields(self) -> dict[str, Any]:
        summary = self.summary
        return {"trace": {"file": self.file_name, "lines": summary.lines if summary else 0,
                          "skipped_lines": summary.skipped_lines if summary else 0, "speed": self.speed}}
