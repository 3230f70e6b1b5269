"""HDR histograms of a run, keyed by (phase, metric, protocol, prompts per request), with per-interval snapshots.

Metrics, in microseconds: `latency` (done - intended start: corrected for coordinated omission), `service`
(done - actual send), `ttfr` (first response - send, streams), `lag` (send - intended start: the tester's own
schedule error), and `server_timing.<name>` for each duration a response's Server-Timing header gave (the server's
own account: openai-images, nim). Values outside the histogram's range are counted in `overflow`, never dropped
silently.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, fields

import numpy as np
from hdrh.histogram import HdrHistogram

from flux_async.measure import hdr

LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS = 1, 3_600_000_000, 3  # 1 µs .. 1 h, 0.1 %
METRICS = ("latency", "service", "ttfr", "lag")
SERVER_TIMING = "server_timing."  # the prefix of the Server-Timing metrics: server_timing.server_e2e, ...
PERCENTILES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def summarize_ms(histogram: HdrHistogram | None) -> dict[str, float]:
    """The report's latency keys (p50 … p999, max, mean) in milliseconds; zeros for an empty histogram."""
    if histogram is None or histogram.get_total_count() == 0:
        return {key: 0.0 for key in (*PERCENTILES, "max", "mean")}
    figures = {key: hdr.value_at_percentile(histogram, p) / 1000 for key, p in PERCENTILES.items()}
    figures["max"] = histogram.get_max_value() / 1000
    figures["mean"] = hdr.mean(histogram) / 1000
    return figures


def stat_ms(histogram: HdrHistogram | None, stat: str) -> float | None:
    """One statistic ('p99.9', 'mean', 'max', 'min') in ms, or None without samples."""
    if histogram is None or histogram.get_total_count() == 0:
        return None
    if stat.startswith("p"):
        return hdr.value_at_percentile(histogram, float(stat[1:])) / 1000
    return {"mean": lambda: hdr.mean(histogram), "max": histogram.get_max_value,
            "min": histogram.get_min_value}[stat]() / 1000


@dataclass
class Counters:
    """What happened to the requests of one phase."""

    sent: int = 0
    ok: int = 0
    errors: int = 0
    dropped: int = 0
    images_ok: int = 0
    good: int = 0  # succeeded within their class's SLO (goodput)
    errors_by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    error_examples: dict[str, str] = field(default_factory=dict)  # kind → the first message of that kind

    def to_dict(self) -> dict:
        """Plain data, for another process (asdict cannot copy the defaultdict)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["errors_by_kind"], data["error_examples"] = dict(self.errors_by_kind), dict(self.error_examples)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Counters:
        counters = cls(**{k: v for k, v in data.items() if k not in ("errors_by_kind", "error_examples")})
        counters.errors_by_kind.update(data.get("errors_by_kind", {}))
        counters.error_examples.update(data.get("error_examples", {}))
        return counters

    def add(self, other: Counters) -> None:
        self.sent += other.sent
        self.ok += other.ok
        self.errors += other.errors
        self.dropped += other.dropped
        self.images_ok += other.images_ok
        self.good += other.good
        for kind, count in other.errors_by_kind.items():
            self.errors_by_kind[kind] += count
        for kind, message in other.error_examples.items():
            self.error_examples.setdefault(kind, message)


@dataclass
class Interval:
    """One interval of a run: histograms per (phase, metric), counters per phase, and sampler readings."""

    start_ns: int
    end_ns: int
    histograms: dict[tuple[str, str], HdrHistogram]
    counters: dict[str, Counters]
    samples: dict = field(default_factory=dict)


def merge_intervals(earlier: Interval, later: Interval, combine: dict | None = None) -> Interval:
    """One interval spanning both: histograms added, counters summed, each sampler's readings combined by
    `combine[name](earlier, later)` where given, else the later reading."""
    histograms = {}
    for key in {**earlier.histograms, **later.histograms}:
        histograms[key] = new_histogram()
        for part in (earlier, later):
            if key in part.histograms:
                histograms[key].add(part.histograms[key])
    counters: dict[str, Counters] = defaultdict(Counters)
    for part in (earlier, later):
        for phase, values in part.counters.items():
            counters[phase].add(values)
    samples = dict(earlier.samples)
    for name, reading in later.samples.items():
        join = (combine or {}).get(name)
        previous = samples.get(name)
        samples[name] = join(previous, reading) if join and previous is not None and reading is not None \
            else (reading if reading is not None else previous)
    return Interval(earlier.start_ns, later.end_ns, histograms, dict(counters), samples)


Key = tuple[str, str, str, int, str]  # (phase, metric, protocol, prompts per request, request class or "")


def class_metric(metric: str, request_class: str) -> str:
    """An interval histogram's metric for one request class: 'latency{class=final}' (its .hlog tag's metric)."""
    return f"{metric}{{class={request_class}}}"


class Recorder:
    """Collects every result of a run: cumulative histograms per key, and the current interval's per (phase, metric)
    (and per (phase, metric of a class), for requests of a workload class).

    Values are appended to lists as results come in and recorded in bulk (numpy) when anything reads the
    histograms or an interval closes: recording stays off the request path."""

    def __init__(self):
        self._pending: dict[Key, list[int]] = defaultdict(list)
        self.histograms: dict[Key, HdrHistogram] = {}
        self.interval: dict[tuple[str, str], HdrHistogram] = {}
        self.counters: dict[str, Counters] = defaultdict(Counters)
        self.class_counters: dict[tuple[str, str], Counters] = defaultdict(Counters)  # (phase, class): cumulative
        self.interval_counters: dict[str, Counters] = defaultdict(Counters)
        self.overflow = 0

    def count(self, phase: str, field_name: str, amount: int = 1, kind: str | None = None,
              message: str | None = None, request_class: str = "") -> None:
        """Add to a counter of the phase (and of its class), cumulative and for the current interval (an error: its
        kind, and its message kept as the kind's example when it is the first)."""
        scopes = [self.counters[phase], self.interval_counters[phase]]
        if request_class:
            scopes.append(self.class_counters[(phase, request_class)])
        for counters in scopes:
            setattr(counters, field_name, getattr(counters, field_name) + amount)
            if kind is not None:
                counters.errors_by_kind[kind] += amount
                if message:
                    counters.error_examples.setdefault(kind, message[:500])

    def record(self, phase: str, metric: str, protocol: str, prompts: int, value_us: int,
               request_class: str = "") -> None:
        self._pending[(phase, metric, protocol, prompts, request_class)].append(value_us)

    def flush(self) -> None:
        """Record what is pending into the cumulative and the interval histograms."""
        pending, self._pending = self._pending, defaultdict(list)
        for key, values in pending.items():
            array = np.maximum(np.fromiter(values, dtype=np.int64, count=len(values)), LOWEST_US)
            histogram = self.histograms.get(key)
            if histogram is None:
                histogram = self.histograms[key] = new_histogram()
            over = array > HIGHEST_US
            self.overflow += int(over.sum())
            array = array[~over]
            hdr.record_many(histogram, array)
            phase, metric, _, _, request_class = key
            interval_keys = [(phase, metric)] + ([(phase, class_metric(metric, request_class))]
                                                 if request_class else [])
            for interval_key in interval_keys:
                current = self.interval.get(interval_key)
                if current is None:
                    current = self.interval[interval_key] = new_histogram()
                hdr.record_many(current, array)

    def take_interval(self) -> tuple[dict[tuple[str, str], HdrHistogram], dict[str, Counters]]:
        """The histograms and counters recorded since the last call (and start a new interval)."""
        self.flush()
        histograms, self.interval = self.interval, {}
        counters, self.interval_counters = dict(self.interval_counters), defaultdict(Counters)
        return histograms, counters

    def merged(self, metric: str, phases: set[str] | None = None, protocol: str | None = None,
               prompts: int | None = None, request_class: str | None = None) -> HdrHistogram | None:
        """One histogram of `metric` over the matching keys (exact: HDR histograms add without loss)."""
        self.flush()
        result = None
        for (phase, m, proto, n, klass), histogram in self.histograms.items():
            if m != metric or (phases is not None and phase not in phases) or (protocol and proto != protocol) \
                    or (prompts is not None and n != prompts) or (request_class is not None and klass != request_class):
                continue
            if result is None:
                result = new_histogram()
            result.add(histogram)
        return result

    def server_timing_names(self, phases: set[str], request_class: str | None = None) -> list[str]:
        """The Server-Timing names recorded in `phases` (without the prefix), sorted."""
        self.flush()
        return sorted({metric[len(SERVER_TIMING):] for (phase, metric, _, _, klass) in self.histograms
                       if phase in phases and metric.startswith(SERVER_TIMING)
                       and (request_class is None or klass == request_class)})

    def prompts_counts(self, phases: set[str], request_class: str | None = None) -> list[int]:
        self.flush()
        return sorted({n for (phase, metric, _, n, klass) in self.histograms if phase in phases
                       and metric == "latency" and (request_class is None or klass == request_class)})

    def classes(self, phases: set[str]) -> list[str]:
        """The request classes that sent requests in `phases`, sorted."""
        return sorted({klass for (phase, klass), c in self.class_counters.items() if phase in phases
                       and c.sent + c.dropped})

    def merged_counters(self, phases: set[str], request_class: str | None = None) -> Counters:
        total = Counters()
        for phase in phases:
            total.add(self.counters[phase] if request_class is None else self.class_counters[(phase, request_class)])
        return total


def encode_histograms(recorder: Recorder) -> dict[str, str]:
    """The recorder's cumulative histograms as text, for another process to add up:
    {'phase\\tmetric\\tprotocol\\tn\\tclass': compressed HDR payload}."""
    recorder.flush()
    return {"\t".join(map(str, key)): histogram.encode().decode("ascii")
            for key, histogram in recorder.histograms.items()}


def add_encoded(recorder: Recorder, encoded: dict[str, str]) -> None:
    """Add `encode_histograms`' output into `recorder`'s cumulative histograms (exactly: HDR histograms add)."""
    for key, payload in encoded.items():
        phase, metric, protocol, prompts, *request_class = key.split("\t")  # older reports: no class
        target = recorder.histograms.setdefault((phase, metric, protocol, int(prompts), "".join(request_class)),
                                                new_histogram())
        target.decode_and_add(payload)


def encode_part(recorder: Recorder) -> dict:
    """Everything another process needs to add this recorder into its own (`add_part`): encoded histograms,
    per-phase and per-class counters, overflow. What a cluster agent's heartbeat and capacity step carry."""
    return {"histograms": encode_histograms(recorder),
            "counters": {phase: c.to_dict() for phase, c in recorder.counters.items()},
            "class_counters": {f"{phase}\t{name}": c.to_dict()
                               for (phase, name), c in recorder.class_counters.items()},
            "overflow": recorder.overflow}


def add_part(recorder: Recorder, part: dict) -> None:
    """Add `encode_part`'s output into `recorder` (histograms exactly, counters summed)."""
    add_encoded(recorder, part["histograms"])
    for phase, counts in part["counters"].items():
        recorder.counters[phase].add(Counters.from_dict(counts))
    for key, counts in part["class_counters"].items():
        phase, name = key.split("\t")
        recorder.class_counters[(phase, name)].add(Counters.from_dict(counts))
    recorder.overflow += part.get("overflow", 0)
