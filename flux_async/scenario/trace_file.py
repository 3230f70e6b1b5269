"""Trace files for `executor: trace`: one request per JSON line, streamed (never loaded whole), so a trace of millions
of lines replays in constant memory (docs/trace.md).

    {"timestamp": 0, "prompt": "a red fox", "seed": 7, "size": "512x512", "steps": 4, "class": "preview"}
    {"timestamp": 250.5, "prompts": ["a cat", "a dog"], "seeds": [1, 2], "class": "final", "extra": {"lora": "x"}}

`timestamp` is milliseconds from the trace's start (the aiperf / mooncake convention) and must not go back: a line's
timestamp is >= the one above it, so the file is replayed in one pass without sorting. Every other field is optional
and falls back to the line's class's settings, then to the workload's. Keys the reader does not know are ignored (a
request log's measurements, a production log's own fields).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flux_async import contract

SIZE = re.compile(r"^(\d+)x(\d+)$")  # WxH, as OpenAI's `size`
CLASS_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # workload_config.CLASS_NAME: a tag in .hlog files, a threshold scope
FIELDS = ("timestamp", "prompt", "prompts", "seed", "seeds", "size", "height", "width", "steps", "guidance",
          "max_sequence_length", "negative_prompt", "images_per_prompt", "class", "extra")


class TraceLineError(ValueError):
    """One line that is not a request: its line number and why."""

    def __init__(self, number: int, message: str):
        super().__init__(message)
        self.number, self.message = number, message


class TraceError(ValueError):
    """A trace that cannot be replayed: `display:line: why` (or `display: why` for the file itself)."""


@dataclass(frozen=True)
class TraceLine:
    """One request of a trace (None: the line leaves it to its class, then to the workload)."""

    number: int  # the line number in the file, from 1
    timestamp_ms: float
    prompts: tuple[str, ...]
    seeds: tuple[int, ...] | None = None
    height: int | None = None
    width: int | None = None
    steps: int | None = None
    guidance: float | None = None
    max_sequence_length: int | None = None
    negative_prompt: str | None = None
    images_per_prompt: int | None = None
    request_class: str | None = None
    extra: dict[str, Any] | None = None


def _integer(item: dict, key: str, low: int, high: int, number: int) -> int | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TraceLineError(number, f"{key} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _size(item: dict, number: int) -> tuple[int | None, int | None]:
    height, width = item.get("height"), item.get("width")
    if item.get("size") is not None:
        match = SIZE.match(str(item["size"]))
        if not match or height is not None or width is not None:
            raise TraceLineError(number, f"size must look like 512x256 (width x height; then height and width are "
                                         f"not given), got {item['size']!r}")
        width, height = int(match.group(1)), int(match.group(2))
    for name, value in (("height", height), ("width", width)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value % contract.SIZE_MULTIPLE
                                  or not contract.MIN_SIZE <= value <= contract.MAX_SIZE):
            raise TraceLineError(number, f"{name} must be a multiple of {contract.SIZE_MULTIPLE} in "
                                         f"[{contract.MIN_SIZE}, {contract.MAX_SIZE}], got {value!r}")
    return height, width


def parse_line(text: str, number: int, previous_ms: float = 0.0) -> TraceLine:
    """The request on line `number` (`previous_ms`: the timestamp of the line above); raises TraceLineError."""
    try:
        item = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceLineError(number, f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(item, dict):
        raise TraceLineError(number, f"must be a JSON object, got {type(item).__name__}")
    timestamp = item.get("timestamp")
    if isinstance(timestamp, bool) or not isinstance(timestamp, (int, float)) or not math.isfinite(timestamp) \
            or timestamp < 0 or timestamp < previous_ms:
        above = f" (the line above: {previous_ms:g})" if previous_ms else ""
        raise TraceLineError(number, f"timestamp must be a number of ms >= 0 and not before the line above{above}, "
                                     f"got {timestamp!r}")
    if "prompt" in item and "prompts" in item:
        raise TraceLineError(number, "give either prompt or prompts, not both")
    prompts = [item["prompt"]] if "prompt" in item else item.get("prompts")
    if not isinstance(prompts, list) or not 1 <= len(prompts) <= contract.MAX_PROMPTS \
            or not all(isinstance(p, str) and p.strip() for p in prompts):
        raise TraceLineError(number, f"needs prompt (a non-empty string) or prompts (a list of 1 to "
                                     f"{contract.MAX_PROMPTS} non-empty strings)")
    seeds: tuple[int, ...] | None = None
    if item.get("seed") is not None and item.get("seeds") is not None:
        raise TraceLineError(number, "give either seed or seeds, not both")
    if item.get("seeds") is not None:
        raw = item["seeds"]
        if not isinstance(raw, list) or len(raw) != len(prompts) or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= contract.MAX_SEED for s in raw):
            raise TraceLineError(number, f"seeds must be a list of {len(prompts)} integers in [0, "
                                         f"{contract.MAX_SEED}] (one per prompt), got {raw!r}")
        seeds = tuple(raw)
    elif item.get("seed") is not None:  # prompt i of the line gets seed + i
        seed = _integer(item, "seed", 0, contract.MAX_SEED - len(prompts) + 1, number)
        assert seed is not None
        seeds = tuple(seed + i for i in range(len(prompts)))
    height, width = _size(item, number)
    guidance = item.get("guidance")
    if guidance is not None and (isinstance(guidance, bool) or not isinstance(guidance, (int, float))
                                 or not contract.MIN_GUIDANCE <= guidance <= contract.MAX_GUIDANCE):
        raise TraceLineError(number, f"guidance must be a number in [{contract.MIN_GUIDANCE:g}, "
                                     f"{contract.MAX_GUIDANCE:g}], got {guidance!r}")
    negative = item.get("negative_prompt")
    if negative is not None and (not isinstance(negative, str) or not negative.strip()):
        raise TraceLineError(number, f"negative_prompt must be a non-empty string, got {negative!r}")
    request_class = item.get("class")
    if request_class is not None and (not isinstance(request_class, str) or not CLASS_NAME.match(request_class)):
        raise TraceLineError(number, f"class must be a name of letters, digits, '_', '.' and '-', got "
                                     f"{request_class!r}")
    extra = item.get("extra")
    if extra is not None and (not isinstance(extra, dict) or not all(isinstance(k, str) for k in extra)):
        raise TraceLineError(number, f"extra must be a JSON object, got {extra!r}")
    return TraceLine(
        number, float(timestamp), tuple(prompts), seeds, height, width,
        _integer(item, "steps", contract.MIN_STEPS, contract.MAX_STEPS, number),
        None if guidance is None else float(guidance),
        _integer(item, "max_sequence_length", contract.MIN_SEQUENCE_LENGTH, contract.MAX_SEQUENCE_LENGTH, number),
        negative, _integer(item, "images_per_prompt", 1, contract.MAX_PROMPTS, number), request_class,
        extra or None)


@dataclass
class TraceSummary:
    """What a whole pass over a trace found: its requests, their timestamps, the bad lines skipped."""

    lines: int = 0  # requests (good lines)
    first_ms: float = 0.0
    last_ms: float = 0.0
    skipped_lines: int = 0  # bad lines (only with skip_bad_lines; otherwise the first one raises)
    first_skipped: str | None = None  # the first bad line's message, for the console


class TraceFile:
    """A trace on disk: `lines()` streams its requests; `check()` passes over all of it first (constant memory).

    `display` is how errors name the file (the path the scenario gave). A bad line raises TraceError naming it, or,
    with `skip_bad_lines`, is counted in `skipped_lines` and left out."""

    def __init__(self, path: Path, display: str | None = None, skip_bad_lines: bool = False):
        self.path, self.display, self.skip_bad_lines = Path(path), display or str(path), skip_bad_lines
        self.skipped_lines = 0  # of the last pass of lines()
        self.first_skipped: str | None = None  # the first bad line's message, in that pass

    def lines(self) -> Generator[TraceLine, None, None]:
        """The file's requests in order, read one line at a time."""
        self.skipped_lines, self.first_skipped, previous = 0, None, 0.0
        try:
            handle = self.path.open(encoding="utf-8")
        except OSError as exc:
            raise TraceError(f"{self.display}: cannot read the trace: {exc.strerror or exc}") from None
        with handle:
            number = 0
            while True:
                try:
                    text = handle.readline()
                except UnicodeDecodeError as exc:
                    raise TraceError(f"{self.display}:{number + 1}: not UTF-8 text ({exc.reason})") from None
                if not text:
                    return
                number += 1
                if not text.strip():
                    continue
                try:
                    line = parse_line(text, number, previous)
                except TraceLineError as exc:
                    if not self.skip_bad_lines:
                        raise TraceError(f"{self.display}:{exc.number}: {exc.message}") from None
                    self.skipped_lines += 1
                    if self.first_skipped is None:
                        self.first_skipped = f"{self.display}:{exc.number}: {exc.message}"
                    continue
                previous = line.timestamp_ms
                yield line

    def check(self) -> TraceSummary:
        """One pass over the whole file (constant memory): its size in requests and time; raises TraceError at the
        first bad line unless `skip_bad_lines`, or when it holds no request."""
        summary = TraceSummary()
        for line in self.lines():
            if not summary.lines:
                summary.first_ms = line.timestamp_ms
            summary.lines += 1
            summary.last_ms = line.timestamp_ms
        summary.skipped_lines, summary.first_skipped = self.skipped_lines, self.first_skipped
        if not summary.lines:
            raise TraceError(f"{self.display}: holds no request" + (
                f" ({self.skipped_lines} bad lines skipped, the first: {summary.first_skipped})"
                if self.skipped_lines else ""))
        return summary


def check(path: Path, display: str | None = None, skip_bad_lines: bool = False) -> TraceSummary:
    """`TraceFile(path, display, skip_bad_lines).check()`."""
    return TraceFile(path, display, skip_bad_lines).check()
