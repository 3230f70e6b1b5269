"""Thresholds in a small k6-like grammar: `<metric> <op> <value>`.

    p(99) < 2s              latency from the intended start (corrected for coordinated omission)
    service.p(95) < 1500ms  service time from the actual send;  also ttfr.* (time to first response), lag.*
    avg, med, max, min      the same histograms' mean, median, max, min (latency unless prefixed)
    error_rate < 1%         errors / sent;  drop_rate: dropped / (sent + dropped)
    images_per_s > 0.5      also requests_per_s, errors, dropped, mismatches
    goodput > 95%           the share of requests (sent or dropped) that succeeded within their class's SLO;
                            goodput_per_s: how many per second
    p(99){class=final} < 8s any metric scoped to one request class of the workload (or of a trace)
Operators: <, <=, >, >=, ==. Durations take us, ms, s or m (plain numbers are ms); rates take % or a fraction.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq}
HISTOGRAMS = ("latency", "service", "ttfr", "lag")
COUNTERS = ("error_rate", "drop_rate", "images_per_s", "requests_per_s", "errors", "dropped", "mismatches",
            "goodput", "goodput_per_s")
_RATES = ("error_rate", "drop_rate", "goodput")
_STATS = {"avg": "mean", "mean": "mean", "med": "p50", "max": "max", "min": "min"}
_TIME_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0, "": 1.0}

_EXPR = re.compile(r"^\s*(?:(?P<hist>latency|service|ttfr|lag)\.)?(?P<metric>p\(\s*(?P<pct>\d+(?:\.\d+)?)\s*\)|"
                   r"[a-z_][a-z0-9_]*)\s*(?:\{\s*class\s*=\s*(?P<klass>[A-Za-z0-9_.-]+)\s*\}\s*)?"
                   r"(?P<op><=|>=|==|<|>)\s*(?P<value>-?\d+(?:\.\d+)?)\s*(?P<unit>us|ms|s|m|%)?\s*$")


@dataclass(frozen=True)
class Threshold:
    """A parsed threshold: `kind` is a histogram name or a counter; `stat` is 'p99.9', 'mean', 'max', ... for
    histograms; `limit` is in ms for histograms and a fraction for rates; `request_class` scopes it to one class."""

    expr: str
    kind: str
    stat: str | None
    op: str
    limit: float
    request_class: str | None = None

    def check(self, lookup: Callable[[str, str | None], float | None]) -> tuple[float | None, bool]:
        """(observed value, passed). A histogram with no samples has no value and fails."""
        value = lookup(self.kind, self.stat)
        return value, value is not None and OPERATORS[self.op](value, self.limit)


def parse_threshold(expr: str) -> Threshold:
    """Parse one expression; raises ValueError saying what is wrong."""
    match = _EXPR.match(expr)
    if not match:
        raise ValueError(f"cannot parse threshold {expr!r}: expected '<metric> <op> <value>', e.g. 'p(99) < 2s', "
                         f"'error_rate < 1%', 'images_per_s > 0.5', 'p(99){{class=final}} < 8s'")
    hist, metric, unit = match.group("hist"), match.group("metric"), match.group("unit") or ""
    value = float(match.group("value"))
    if match.group("pct") is not None or metric in _STATS:
        stat = f"p{float(match.group('pct')):g}" if match.group("pct") is not None else _STATS[metric]
        if match.group("pct") is not None and not 0 < float(match.group("pct")) <= 100:
            raise ValueError(f"percentile in {expr!r} must be in (0, 100]")
        if unit == "%":
            raise ValueError(f"{expr!r}: a latency takes a time unit (us, ms, s, m), not %")
        return Threshold(expr, hist or "latency", stat, match.group("op"), value * _TIME_UNITS_MS[unit],
                         match.group("klass"))
    if hist or metric not in COUNTERS:
        known = ", ".join(["p(N)", "avg", "med", "max", "min", *COUNTERS])
        raise ValueError(f"unknown metric {metric!r} in {expr!r} (known: {known}; prefix latency., service., ttfr. "
                         f"or lag. for the histograms)")
    if metric in _RATES:
        if unit not in ("%", ""):
            raise ValueError(f"{expr!r}: a rate takes % or a fraction")
        value = value / 100 if unit == "%" else value
    elif unit:
        raise ValueError(f"{expr!r}: {metric} takes a plain number")
    return Threshold(expr, metric, None, match.group("op"), value, match.group("klass"))
