"""The JSON report as types (docs/report.md): a field per key, named like the key; `to_json()` / `from_json()`.

Version 1. New keys are additive: a report without them loads with their defaults (or ABSENT, when a key only some
reports have), and keys a reader does not know are kept in `extra`. Per-stage statistics, timeline rows, faults,
spectra and the machine stay plain JSON (dicts and lists).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flux_async.report.typed_json import ABSENT, Absent, JsonObject

REPORT_VERSION = 1


@dataclass
class Target(JsonObject):
    url: str = ""
    protocol: str = ""
    model: str = ""


@dataclass
class Requests(JsonObject):
    sent: int = 0
    ok: int = 0
    errors: int = 0
    dropped: int = 0


@dataclass
class Images(JsonObject):
    ok: int = 0


@dataclass
class Throughput(JsonObject):
    requests_per_s: float = 0.0
    images_per_s: float = 0.0


@dataclass
class Latency(JsonObject):
    """Percentiles, max and mean of one histogram, in ms (zeros without samples)."""

    p50: float = 0.0
    p90: float = 0.0
    p95: float = 0.0
    p99: float = 0.0
    p999: float = 0.0
    max: float = 0.0
    mean: float = 0.0


@dataclass
class ServerTiming(Latency):
    """One Server-Timing duration the responses reported (openai-images, nim), in ms, and how many carried it."""

    count: int = 0


@dataclass
class PromptsFigures(JsonObject):
    """The figures of the requests that carried one number of prompts."""

    ok: int = 0
    latency_ms: Latency = field(default_factory=Latency)
    service_time_ms: Latency = field(default_factory=Latency)


@dataclass
class Figures(JsonObject):
    """A scope's measurements (the whole run's measured phases, one phase, or one capacity step)."""

    duration_s: float = 0.0
    requests: Requests = field(default_factory=Requests)
    images: Images = field(default_factory=Images)
    throughput: Throughput = field(default_factory=Throughput)
    latency_ms: Latency = field(default_factory=Latency)
    service_time_ms: Latency = field(default_factory=Latency)
    errors_by_kind: dict[str, int] = field(default_factory=dict)
    error_examples: dict[str, str] | Absent = ABSENT  # kind → its first message; runs with errors only
    schedule_lag_ms: Latency = field(default_factory=Latency)
    by_prompts_per_request: dict[str, PromptsFigures] = field(default_factory=dict)
    time_to_first_response_ms: Latency | Absent = ABSENT  # streaming targets only
    server_timing_ms: dict[str, ServerTiming] | Absent = ABSENT  # responses with a Server-Timing header only
    goodput: float | None | Absent = ABSENT  # workloads with an SLO: share of requests within their class's SLO
    goodput_per_s: float | Absent = ABSENT


@dataclass
class ThresholdResult(JsonObject):
    """A threshold's observed value (None: nothing was measured) and verdict; `phase` for a phase's own."""

    expr: str = ""
    value: float | None = None
    ok: bool = False
    phase: str | Absent = ABSENT
    extra: dict = field(default_factory=dict)


@dataclass
class PhaseVerification(JsonObject):
    checked: int = 0
    mismatches: int = 0
    extra: dict = field(default_factory=dict)


@dataclass
class Verification(JsonObject):
    """The `verification` section: counts, the gate in force and how close the images came, the mismatches."""

    enabled: bool = False
    workers: int | Absent = ABSENT  # merged from `run --workers`
    checked: int = 0
    mismatches: int = 0
    unchecked: int | Absent = ABSENT
    references: int | Absent = ABSENT
    reference_errors: dict[str, str] | Absent = ABSENT
    unstable_references: list[str] | Absent = ABSENT
    sample_rate: float | None | Absent = ABSENT
    gate: dict | Absent = ABSENT
    worst: dict | Absent = ABSENT
    worst_passing: dict | Absent = ABSENT
    margin: dict | Absent = ABSENT
    gate_explained: str | Absent = ABSENT
    mismatch_examples: list[dict] | Absent = ABSENT
    note: str | Absent = ABSENT  # why verification is off
    extra: dict = field(default_factory=dict)


@dataclass
class ClientUsageSummary(JsonObject):
    """The tester's own cost and its saturation verdict (keys of measure.client_usage; older reports lack some)."""

    requests: int | Absent = ABSENT
    cpu_s: float | Absent = ABSENT
    cpu_us_per_request: float | None | Absent = ABSENT
    cores: float | Absent = ABSENT
    loop_busy: float | Absent = ABSENT
    loop_busy_max: float | Absent = ABSENT
    schedule_lag_p99_ms: float | None | Absent = ABSENT
    outbound_queue_max: int | Absent = ABSENT
    rss_mb_start: float | Absent = ABSENT
    rss_mb_end: float | Absent = ABSENT
    event_loop: str | None | Absent = ABSENT
    saturated: bool | Absent = ABSENT
    reasons: list[str] | Absent = ABSENT
    parts: int | Absent = ABSENT  # combined from several processes
    limits: dict | None | Absent = ABSENT
    extra: dict = field(default_factory=dict)


@dataclass
class ClassScope(JsonObject):
    """One request class's scope in `classes` (of a phase, or of the run): a phase's figures for its requests."""

    figures: Figures = field(default_factory=Figures, metadata={"flatten": True})
    slo: str | None = None  # its objective, e.g. "latency <= 8000 ms" (None: none)
    verification: PhaseVerification | Absent = ABSENT
    thresholds: list[ThresholdResult] = field(default_factory=list)  # the thresholds scoped to it
    extra: dict = field(default_factory=dict)


@dataclass
class Phase(JsonObject):
    """One phase's scope in `phases`."""

    name: str = ""
    executor: str = ""
    warmup: bool = False
    finished: bool = False
    figures: Figures = field(default_factory=Figures, metadata={"flatten": True})
    stages: dict | None | Absent = ABSENT  # per model, from Triton's statistics
    first_to_queue: str | None | Absent = ABSENT
    verification: PhaseVerification | Absent = ABSENT
    thresholds: list[ThresholdResult] = field(default_factory=list)
    classes: dict[str, ClassScope] | Absent = ABSENT  # workloads (or traces) with request classes
    extra: dict = field(default_factory=dict)


@dataclass
class Report(JsonObject):
    """The report of `run` (and of `run --workers`, merged); the top-level figures cover the measured phases."""

    version: int = REPORT_VERSION
    scenario: str = ""
    target: Target = field(default_factory=Target)
    started_at: str = ""
    passed: bool = False
    figures: Figures = field(default_factory=Figures, metadata={"flatten": True})
    phases: list[Phase] = field(default_factory=list)
    classes: dict[str, ClassScope] | Absent = ABSENT  # over the measured phases, like the top-level figures
    verification: Verification = field(default_factory=Verification)
    thresholds: list[ThresholdResult] = field(default_factory=list)
    interrupted: bool = False
    stop_reason: str | None = None
    wall_time_s: float = 0.0
    histogram_overflow: int = 0
    embedded_server: bool = False
    spectrum: dict[str, list[list[float]]] = field(default_factory=dict)
    timeline: list[dict] = field(default_factory=list)
    gpu: dict = field(default_factory=lambda: {"available": False, "reason": "not sampled"})
    metrics_url: str | None = None
    server: dict[str, dict[str, str]] | Absent = ABSENT  # per model: dtype, precision, speed switches (metrics)
    faults: list[dict] | Absent = ABSENT
    workers: int | Absent = ABSENT  # merged from `run --workers`
    client: ClientUsageSummary | None | Absent = ABSENT
    worker: str | Absent = ABSENT  # "i/N": one worker's share, with its raw histograms for the parent
    histograms: dict[str, str] | Absent = ABSENT
    timeline_epoch_s: float | Absent = ABSENT
    machine: dict | Absent = ABSENT
    cluster: dict | Absent = ABSENT  # run --cluster: the address, agents, clock bound, on_agent_loss
    agents: list[dict] | Absent = ABSENT  # run --cluster: one row per agent (node, share, counts, clock offset, loss)
    agent_losses: list[dict] | Absent = ABSENT  # run --cluster: when and why each lost agent was lost
    extra: dict = field(default_factory=dict)

    kind = "run"


@dataclass
class CapacityStep(JsonObject):
    """One step of the capacity search: its load, figures and SLO verdict."""

    step: int = 0
    mode: str = "rate"
    load: float = 0.0
    repeat: int = 1
    warmup: bool = False
    figures: Figures = field(default_factory=Figures, metadata={"flatten": True})
    achieved_requests_per_s: float = 0.0
    verification: PhaseVerification = field(default_factory=PhaseVerification)
    slo: list[ThresholdResult] = field(default_factory=list)
    passed: bool = False
    stages: dict | None = None
    interrupted: bool = False
    partial: str | Absent = ABSENT  # capacity --cluster: an agent was lost during the step (it ran again; no vote)
    client: ClientUsageSummary | None | Absent = ABSENT
    rate_per_s: float | Absent = ABSENT
    completion_rate_per_s: float | None | Absent = ABSENT
    concurrency: int | Absent = ABSENT
    extra: dict = field(default_factory=dict)


@dataclass
class CapacitySection(JsonObject):
    """The `capacity` section: the highest load under the SLO, the knee, and every step."""

    mode: str = "rate"
    max_rate_per_s: float = 0.0
    max_concurrency: int | Absent = ABSENT  # concurrency mode
    max_images_per_s: float = 0.0
    lowest_failing_load: float | None = None
    bounded_by: str = ""
    slo: list[str] = field(default_factory=list)
    slo_limits_ms: list[float] = field(default_factory=list)
    knee: CapacityStep | None = None
    steps: list[CapacityStep] = field(default_factory=list)
    interrupted: bool = False
    settings: dict | Absent = ABSENT
    extra: dict = field(default_factory=dict)


@dataclass
class CapacityReport(JsonObject):
    """The report of `capacity`: the run report's identity keys, `capacity`, and the verification summary."""

    version: int = REPORT_VERSION
    kind: str = "capacity"
    scenario: str = ""
    target: Target = field(default_factory=Target)
    started_at: str = ""
    finished_at: str = ""
    passed: bool = False
    capacity: CapacitySection = field(default_factory=CapacitySection)
    client: ClientUsageSummary | None = None
    verification: Verification = field(default_factory=Verification)
    machine: dict | Absent = ABSENT
    cluster: dict | Absent = ABSENT  # capacity --cluster: as the run report's
    agents: list[dict] | Absent = ABSENT  # capacity --cluster: one row per agent, its counts over every step
    agent_losses: list[dict] | Absent = ABSENT  # capacity --cluster: when (step, s into it) and why
    extra: dict = field(default_factory=dict)


def load_report(data: dict | Report | CapacityReport) -> Report | CapacityReport:
    """A report of either kind from its JSON (a typed report is returned as it is)."""
    if isinstance(data, (Report, CapacityReport)):
        return data
    return CapacityReport.from_json(data) if data.get("kind") == "capacity" else Report.from_json(data)
