"""`run --request-log FILE.jsonl`: one JSON line per request, in the trace format (scenario/trace_file.py,
docs/trace.md) plus what was measured, so a run can be replayed with `executor: trace`.

    {"timestamp": 1250.0, "prompts": ["a red fox"], "seeds": [1003], "size": "256x256", "steps": 4, "class": "preview",
     "phase": "bursts", "outcome": "ok", "send_ms": 1250.4, "first_ms": null, "end_ms": 3102.9, "latency_ms": 1852.9,
     "service_ms": 1852.5, "images": 1}

`timestamp` is the request's intended start in ms from the run's start; lines are written in the order requests
were scheduled (so timestamps never go back, as a trace needs), each once it has ended: a request still in flight
holds back the lines after it (memory: the requests that end while the oldest one is in flight). Writes are buffered
and flushed every `FLUSH_EVERY` lines and at the end — also when the run is interrupted (Ctrl-C, SIGTERM); a process
killed outright loses what was not flushed.
"""

from __future__ import annotations

import heapq
import json
from pathlib import Path
from typing import Any

from flux_async.scenario.workload import Job
from flux_async.targets.base import Outcome

FLUSH_EVERY = 1000
NS_PER_MS = 1_000_000


def request_fields(job: Job) -> dict[str, Any]:
    """The trace fields of `job`: what it asked for (settings left to the server are left out)."""
    item: dict[str, Any] = {"prompts": list(job.prompts)}
    if job.seeds is not None and len(job.seeds) == len(job.prompts):
        item["seeds"] = list(job.seeds)
    if job.height is not None and job.width is not None:
        item["size"] = f"{job.width}x{job.height}"
    else:
        item.update({k: v for k, v in (("height", job.height), ("width", job.width)) if v is not None})
    for key, value in (("steps", job.steps), ("guidance", job.guidance),
                       ("max_sequence_length", job.max_sequence_length), ("negative_prompt", job.negative_prompt),
                       ("class", job.request_class), ("extra", job.extra)):
        if value is not None:
            item[key] = value
    if job.images_per_prompt != 1:
        item["images_per_prompt"] = job.images_per_prompt
    return item


class RequestLog:
    """Writes `path` as requests end (the engine's `RequestLogger`)."""

    def __init__(self, path: Path, flush_every: int = FLUSH_EVERY):
        self.path, self.flush_every = Path(path), flush_every
        self._file = self.path.open("w", encoding="utf-8")
        self._origin_ns = 0
        self._reserved = 0  # tickets handed out
        self._next = 0  # the ticket whose line is written next
        self._waiting: dict[int, dict[str, Any]] = {}  # lines that ended before an earlier one
        self._buffer: list[str] = []
        self._last_ms = 0.0
        self.lines = 0

    # ---- the engine's side -----------------------------------------------------------------------------------
    def start(self, origin_ns: int) -> None:
        """The run's start (perf_counter ns): timestamps count from it."""
        self._origin_ns = origin_ns

    def reserve(self) -> int:
        """A ticket for the next request scheduled: its line's place in the file."""
        ticket, self._reserved = self._reserved, self._reserved + 1
        return ticket

    def done(self, ticket: int, phase: str, job: Job, intended_ns: int, outcome: Outcome) -> None:
        item = self._common(phase, job, intended_ns)
        item["outcome"] = "ok" if outcome.ok else (outcome.error_kind or "error")
        if not outcome.ok and outcome.error:
            item["error"] = outcome.error[:200]
        item.update(send_ms=self._ms(outcome.sent_ns),
                    first_ms=None if outcome.first_ns is None else self._ms(outcome.first_ns),
                    end_ms=self._ms(outcome.done_ns), latency_ms=round((outcome.done_ns - intended_ns) / NS_PER_MS, 3),
                    service_ms=round((outcome.done_ns - outcome.sent_ns) / NS_PER_MS, 3), images=outcome.images)
        self._put(ticket, item)

    def dropped(self, ticket: int, phase: str, job: Job, intended_ns: int) -> None:
        """A request over the phase's in-flight cap: never sent, logged with what it would have asked for."""
        self._put(ticket, {**self._common(phase, job, intended_ns), "outcome": "dropped"})

    # ---- writing ---------------------------------------------------------------------------------------------
    def _ms(self, ns: int) -> float:
        return round((ns - self._origin_ns) / NS_PER_MS, 3)

    def _common(self, phase: str, job: Job, intended_ns: int) -> dict[str, Any]:
        return {"timestamp": self._ms(intended_ns), **request_fields(job), "phase": phase}

    def _put(self, ticket: int, item: dict[str, Any]) -> None:
        if ticket != self._next:
            self._waiting[ticket] = item
            return
        self._emit(item)
        self._next += 1
        while self._next in self._waiting:
            self._emit(self._waiting.pop(self._next))
            self._next += 1

    def _emit(self, item: dict[str, Any]) -> None:
        # a timestamp never goes back (a trace's rule), even where two schedulers' clocks were read out of order
        item["timestamp"] = self._last_ms = max(item["timestamp"], self._last_ms)
        self._buffer.append(json.dumps(item, ensure_ascii=False) + "\n")
        self.lines += 1
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self._buffer:
            self._file.write("".join(self._buffer))
            self._buffer.clear()
        self._file.flush()

    def close(self) -> None:
        """Write what is left (lines held back by a request that never ended: in order), flush and close."""
        if self._file.closed:
            return
        for ticket in sorted(self._waiting):
            self._emit(self._waiting.pop(ticket))
        self.flush()
        self._file.close()


def merge_logs(parts: list[Path], path: Path) -> int:
    """The request logs of `run --workers` processes, merged by timestamp into `path` (streamed: constant memory);
    the number of lines. Each part's timestamps count from its own process's start, a few ms apart."""

    def lines(part: Path):
        with part.open(encoding="utf-8") as handle:
            for text in handle:
                if text.strip():
                    yield json.loads(text)["timestamp"], text

    count = 0
    with path.open("w", encoding="utf-8") as out:
        for _, text in heapq.merge(*(lines(p) for p in parts if p.is_file()), key=lambda pair: pair[0]):
            out.write(text)
            count += 1
    return count
