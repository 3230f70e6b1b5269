"""The scenario's `workload:` section: prompts (inline or from .txt/.jsonl/.csv files), settings, request classes with
their weights and latency objectives.

    workload:
      prompts_file: prompts.csv          # or prompts: [...]
      seed: 0
      slo: {latency: 10s}                # a request is "good" when it succeeds within every limit (goodput)
      classes:                           # optional: each request draws a class by weight
        preview: {weight: 3, size: 512x512, steps: 4, slo: {latency: 3s}}
        final: {weight: 1, size: 1024x1024, steps: 28, prompts_file: finals.txt, slo: {latency: 8s}}
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from flux_async import contract
from flux_async.scenario.reader import Reader, integer, number, parse_duration

SETTINGS = ("prompts", "prompts_file", "steps", "guidance", "height", "width", "size", "max_sequence_length",
            "prompts_per_request", "images_per_prompt", "negative_prompt", "slo")
SLO_METRICS = ("latency", "service", "ttfr")  # latency: from the intended start; service: from the send
CLASS_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")  # also a tag in .hlog files and a threshold scope


@dataclass(frozen=True)
class Slo:
    """A request's own objective: limits in ms on its latency, service time and time to first response."""

    latency_ms: float | None = None
    service_ms: float | None = None
    ttfr_ms: float | None = None

    def met(self, latency_ms: float, service_ms: float, ttfr_ms: float | None) -> bool:
        """Whether a successful request with these times met every limit given (no ttfr: that limit is not met)."""
        checks = ((self.latency_ms, latency_ms), (self.service_ms, service_ms), (self.ttfr_ms, ttfr_ms))
        return all(limit is None or (value is not None and value <= limit) for limit, value in checks)

    def describe(self) -> str:
        parts = [f"{name} <= {limit:g} ms" for name, limit in zip(SLO_METRICS, (self.latency_ms, self.service_ms,
                                                                                   self.ttfr_ms)) if limit is not None]
        return " and ".join(parts)


@dataclass
class WorkloadConfig:
    prompts: list[str]
    seed: int | None = 0  # None: the server draws the seeds
    steps: int | None = None
    guidance: float | None = None
    height: int | None = None
    width: int | None = None
    max_sequence_length: int | None = None
    prompts_per_request: dict[int, float] = field(default_factory=lambda: {1: 1.0})  # count → weight
    images_per_prompt: int = 1  # openai-images / nim only: n (samples) images of the request's one prompt
    negative_prompt: str | None = None  # sent where the target maps it
    slo: Slo | None = None  # counts a request toward goodput
    classes: dict[str, RequestClass] = field(default_factory=dict)  # name → class; empty: one unnamed class

    def variants(self) -> list[WorkloadConfig]:
        """The settings requests are drawn from: each class's, or the workload's own when it has no classes."""
        return [c.settings for c in self.classes.values()] or [self]

    def slo_of(self, name: str | None) -> Slo | None:
        """The objective of class `name` (a class a trace names but the workload does not: the workload's)."""
        request_class = self.classes.get(name) if name is not None else None
        return request_class.settings.slo if request_class is not None else self.slo


@dataclass
class RequestClass:
    """A named kind of request (e.g. preview, final): drawn with `weight`; `settings` is the workload with the
    class's own fields (prompts, size, steps, guidance, prompts per request, slo, ...) put in."""

    name: str
    weight: float
    settings: WorkloadConfig


# ---- reading -----------------------------------------------------------------------------------------------------
def read_prompts_file(file: Path) -> list[str]:
    """Prompts from `file`: .txt one per line, .jsonl a `prompt` field per line, .csv a `prompt` column; blank
    lines skipped. Raises ValueError naming the line that does not fit."""
    text = file.read_text(encoding="utf-8")
    suffix = file.suffix.lower()
    if suffix == ".jsonl":
        prompts = []
        for number_, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"line {number_}: not JSON ({exc.msg})") from None
            if not isinstance(item, dict) or not isinstance(item.get("prompt"), str) or not item["prompt"].strip():
                raise ValueError(f"line {number_}: needs a non-empty string field 'prompt'")
            prompts.append(item["prompt"].strip())
        return prompts
    if suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if "prompt" not in (reader.fieldnames or []):
            raise ValueError(f"line 1: needs a 'prompt' column (its columns: {', '.join(reader.fieldnames or [])})")
        return [row["prompt"].strip() for row in reader if (row.get("prompt") or "").strip()]
    return [line.strip() for line in text.splitlines() if line.strip()]


def _prompts(r: Reader, data: dict, path: str, base_dir: Path) -> list[str]:
    prompts = data.get("prompts")
    if data.get("prompts_file") is not None:
        if prompts is not None:
            r.problem(f"{path}.prompts_file", "give either prompts or prompts_file, not both")
        file = (base_dir / str(data["prompts_file"])).resolve()
        try:
            prompts = read_prompts_file(file)
        except (OSError, UnicodeDecodeError, ValueError, csv.Error) as exc:
            r.problem(f"{path}.prompts_file", f"cannot read {file}: {exc}")
            return []
        if not prompts:
            r.problem(f"{path}.prompts_file", f"{file} holds no prompts")
            return []
    if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) and p.strip() for p in prompts):
        r.problem(f"{path}.prompts", "must be a non-empty list of non-empty strings (or give prompts_file)")
        return []
    return prompts


def _prompts_per_request(r: Reader, value: Any, path: str) -> dict[int, float]:
    if value is None:
        return {1: 1.0}
    if isinstance(value, int) and not isinstance(value, bool):
        counts = {value: 1.0}
    elif isinstance(value, dict) and set(value) == {"uniform"}:
        bounds = value["uniform"]
        if not (isinstance(bounds, list) and len(bounds) == 2 and all(isinstance(b, int) for b in bounds)
                and bounds[0] <= bounds[1]):
            r.problem(f"{path}.uniform", "must be [low, high] with integers low <= high")
            return {1: 1.0}
        counts = {n: 1.0 for n in range(bounds[0], bounds[1] + 1)}
    elif isinstance(value, dict):
        counts = value
    else:
        r.problem(path, "must be a count, {uniform: [low, high]} or a mapping count → weight")
        return {1: 1.0}
    for n, weight in counts.items():
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= contract.MAX_PROMPTS:
            r.problem(f"{path}.{n}", f"prompts per request must be an integer in [1, {contract.MAX_PROMPTS}]")
            return {1: 1.0}
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
            r.problem(f"{path}.{n}", f"weight must be a number > 0, got {weight!r}")
            return {1: 1.0}
    return {int(n): float(w) for n, w in counts.items()}


def _slo(r: Reader, value: Any, path: str) -> Slo | None:
    if value is None:
        return None
    data = r.mapping(value, path, SLO_METRICS)
    limits = {m: r.get(data, m, path, parse_duration, None, lambda v: v > 0, "must be a duration > 0, e.g. 8s")
              for m in SLO_METRICS}
    if not any(v is not None for v in limits.values()):
        if isinstance(value, dict) and not any(m in value for m in SLO_METRICS):
            r.problem(path, f"needs at least one of {', '.join(SLO_METRICS)}")
        return None
    return Slo(*(None if v is None else v * 1000 for v in limits.values()))


def _sizes(r: Reader, data: dict, path: str) -> dict[str, int | None]:
    height, width = data.get("height"), data.get("width")
    if data.get("size") is not None:
        match = re.match(r"^(\d+)x(\d+)$", str(data["size"]))
        if not match or height is not None or width is not None:
            r.problem(f"{path}.size", "must be WIDTHxHEIGHT like 512x256 (and then height/width are not given)")
        else:  # width first, as OpenAI's size and the trace format
            width, height = int(match.group(1)), int(match.group(2))
    sizes = {}
    for name, value in (("height", height), ("width", width)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value % contract.SIZE_MULTIPLE
                                  or not contract.MIN_SIZE <= value <= contract.MAX_SIZE):
            r.problem(f"{path}.{name}", f"must be a multiple of {contract.SIZE_MULTIPLE} in "
                                        f"[{contract.MIN_SIZE}, {contract.MAX_SIZE}], got {value!r}")
            value = None
        sizes[name] = value
    return sizes


def _settings(r: Reader, data: dict, path: str, base_dir: Path, base: WorkloadConfig) -> WorkloadConfig:
    """`base` with the settings `data` gives (a workload's own, or a class's over its workload's)."""
    given: dict[str, Any] = {}
    if "prompts" in data or "prompts_file" in data:
        given["prompts"] = _prompts(r, data, path, base_dir)
    if any(k in data for k in ("size", "height", "width")):
        given.update(_sizes(r, data, path))
    given["steps"] = r.get(data, "steps", path, integer, base.steps,
                           lambda v: contract.MIN_STEPS <= v <= contract.MAX_STEPS,
                           f"must be an integer in [{contract.MIN_STEPS}, {contract.MAX_STEPS}]")
    given["guidance"] = r.get(data, "guidance", path, number, base.guidance,
                              lambda v: contract.MIN_GUIDANCE <= v <= contract.MAX_GUIDANCE,
                              f"must be a number in [{contract.MIN_GUIDANCE:g}, {contract.MAX_GUIDANCE:g}]")
    given["max_sequence_length"] = r.get(
        data, "max_sequence_length", path, integer, base.max_sequence_length,
        lambda v: contract.MIN_SEQUENCE_LENGTH <= v <= contract.MAX_SEQUENCE_LENGTH,
        f"must be an integer in [{contract.MIN_SEQUENCE_LENGTH}, {contract.MAX_SEQUENCE_LENGTH}]")
    if "prompts_per_request" in data:
        given["prompts_per_request"] = _prompts_per_request(r, data["prompts_per_request"],
                                                            f"{path}.prompts_per_request")
    given["images_per_prompt"] = r.get(data, "images_per_prompt", path, integer, base.images_per_prompt,
                                       lambda v: 1 <= v <= contract.MAX_PROMPTS,
                                       f"must be an integer in [1, {contract.MAX_PROMPTS}]")
    given["negative_prompt"] = r.get(data, "negative_prompt", path, str, base.negative_prompt,
                                     lambda v: bool(v.strip()), "must be a non-empty string")
    if "slo" in data:
        given["slo"] = _slo(r, data["slo"], f"{path}.slo")
    return replace(base, **given)


def _classes(r: Reader, value: Any, path: str, base_dir: Path, workload: WorkloadConfig) -> dict[str, RequestClass]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not value:
        r.problem(path, "must map class names to their settings, e.g. {preview: {weight: 3, size: 512x512}}")
        return {}
    classes = {}
    for name, data in value.items():
        where = f"{path}.{name}"
        if not isinstance(name, str) or not CLASS_NAME.match(name):
            r.problem(where, "a class name uses only letters, digits, '_', '.' and '-'")
            continue
        data = r.mapping(data, where, ("weight", *SETTINGS), ("weight",))
        weight = r.get(data, "weight", where, number, 1.0, lambda v: v > 0, "must be a number > 0")
        settings = _settings(r, data, where, base_dir, replace(workload, classes={}))
        classes[name] = RequestClass(name, weight, settings)
    return classes


def parse_workload(r: Reader, data: Any, base_dir: Path, path: str = "workload") -> WorkloadConfig:
    """The `workload:` mapping → `WorkloadConfig`; problems go to `r` with their YAML paths."""
    data = r.mapping(data, path, ("seed", "classes", *SETTINGS))
    seed = data.get("seed", 0)
    if seed == "random":
        seed = None
    elif isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= contract.MAX_SEED:
        r.problem(f"{path}.seed", f"must be an integer in [0, {contract.MAX_SEED}] or 'random', got {seed!r}")
        seed = 0
    classes_data = data.get("classes")
    own_prompts = isinstance(classes_data, dict) and bool(classes_data) and all(
        isinstance(c, dict) and ("prompts" in c or "prompts_file" in c) for c in classes_data.values())
    if not ("prompts" in data or "prompts_file" in data or own_prompts):
        data = {**data, "prompts": None}  # reported: a workload needs prompts (or every class its own)
    workload = _settings(r, data, path, base_dir, WorkloadConfig(prompts=[], seed=seed))
    workload.classes = _classes(r, classes_data, f"{path}.classes", base_dir, workload)
    if not workload.prompts:  # every class has its own: the workload's are theirs together
        workload.prompts = list(dict.fromkeys(p for c in workload.classes.values() for p in c.settings.prompts))
    return workload
