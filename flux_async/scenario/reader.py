"""Reading YAML values: durations, rates, numbers and thresholds, with every problem collected under its YAML path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from flux_async.scenario.thresholds import Threshold, parse_threshold

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|ms|s|m|h)?\s*$")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: Any) -> float:
    """'500ms', '2s', '1.5m', or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like 10s or 500ms, got {value!r}")
    if isinstance(value, (int, float)):
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"must be a duration like 10s or 500ms, got {value!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_rate(value: Any) -> float:
    """'5/s', '30/m', '2' → requests per second."""
    text = str(value).strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    match = re.match(r"^(\d+(?:\.\d*)?|\.\d+)\s*/\s*(ms|s|m|h)$", text)
    if not match:
        raise ValueError(f"must be a rate like 5/s or 30/m, got {value!r}")
    return float(match.group(1)) / _UNITS[match.group(2)]


def integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("not an integer")
    return value


def number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("not a number")
    return float(value)


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("not a boolean")
    return value


class Reader:
    """Walks a YAML mapping, collecting every problem with its path instead of stopping at the first."""

    def __init__(self, base_dir: Path | None = None):
        self.problems: list[str] = []
        self.base_dir = base_dir or Path.cwd()  # relative file names in the scenario are resolved against it

    def problem(self, path: str, message: str) -> None:
        self.problems.append(f"{path}: {message}")

    def mapping(self, value: Any, path: str, allowed: tuple[str, ...], required: tuple[str, ...] = ()) -> dict:
        if not isinstance(value, dict):
            self.problem(path, f"must be a mapping, got {type(value).__name__}")
            return {}
        for key in value:
            if key not in allowed:
                self.problem(f"{path}.{key}", f"unknown key (allowed: {', '.join(allowed)})")
        for key in required:
            if key not in value:
                self.problem(f"{path}.{key}", "is required")
        return value

    def get(self, data: dict, key: str, path: str, parse, default=None, check=None, expect: str = ""):
        """Parse data[key] with `parse`; check it with `check` (a predicate) described by `expect`."""
        if key not in data or data[key] is None:
            return default
        try:
            value = parse(data[key])
        except (TypeError, ValueError) as exc:
            self.problem(f"{path}.{key}", str(exc) if str(exc).startswith("must") else f"{expect}, got {data[key]!r}")
            return default
        if check is not None and not check(value):
            self.problem(f"{path}.{key}", f"{expect}, got {data[key]!r}")
            return default
        return value

    def choice(self, data: dict, key: str, path: str, choices: tuple[str, ...], default: str) -> str:
        return self.get(data, key, path, str, default, lambda v: v in choices, f"must be one of {', '.join(choices)}")

    def positive_int(self, data: dict, key: str, path: str, default: int | None = None) -> int | None:
        return self.get(data, key, path, integer, default, lambda v: v >= 1, "must be an integer >= 1")

    def thresholds(self, value: Any, path: str) -> list[Threshold]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(path, "must be a list of expressions like 'p(99) < 2s'")
            return []
        thresholds = []
        for i, expr in enumerate(value):
            try:
                thresholds.append(parse_threshold(str(expr)))
            except ValueError as exc:
                self.problem(f"{path}[{i}]", str(exc))
        return thresholds
