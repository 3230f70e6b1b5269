"""YAML scenario → typed config. Executors are data; unknown keys are rejected; `load_scenario` reports every problem
at once, each with its YAML path (k6's scenario configs are the model).

    name: burst
    target:   {url: "grpc://host:8001", protocol: grpc, model: bls, request_timeout: 300s}
    workload: {prompts: [...], seed: 0, steps: 4, height: 256, width: 256, prompts_per_request: {1: 3, 4: 1}}
    phases:
      - {name: warm-up, executor: constant-concurrency, concurrency: 1, requests: 2, warmup: true}
      - {name: bursts, executor: burst, burst_size: 6, every: 4s, bursts: 3}
    thresholds: ["p(99) < 20s", "error_rate < 1%"]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from flux_async import contract
from flux_async.errors import ScenarioError
from flux_async.measure.gates import GATES, THRESHOLD_KEYS, Gate, explicit_gate
from flux_async.scenario.executors import EXECUTORS, Executor
from flux_async.scenario.faults import FaultConfig, parse_faults
from flux_async.scenario.http_protocols import HTTP_JSON_PROTOCOLS, protocol_problems, read_fields
from flux_async.scenario.model_contract import BLS, Contract, parse_contract
from flux_async.scenario.reader import (
    Reader,
    boolean,
    integer,
    number,
    parse_duration,
    parse_rate,  # noqa: F401  (re-exported: callers read values through config)
)
from flux_async.scenario.thresholds import Threshold
from flux_async.scenario.workload_config import RequestClass, Slo, WorkloadConfig, parse_workload  # noqa: F401

PROTOCOLS = ("grpc", "grpc-stream", "http", *HTTP_JSON_PROTOCOLS)  # the last two: scenario/http_protocols.py
BALANCE = ("round-robin", "least-in-flight")
COMPRESSION = ("none", "gzip", "deflate")  # asked of the server: a deliberate load choice that costs its CPU


@dataclass
class TlsConfig:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass
class TargetConfig:
    urls: list[str] = field(default_factory=list)
    protocol: str = "grpc"
    model: str | None = None  # default: bls, or bls_stream for grpc-stream; none for openai-images and nim
    request_timeout_s: float = 600.0
    connect_timeout_s: float = 30.0
    headers: dict[str, str] = field(default_factory=dict)
    tls: TlsConfig | None = None
    balance: str = "round-robin"
    metrics_url: str | None = None  # Triton's Prometheus endpoint, scraped per interval
    control_url: str | None = None  # Triton's HTTP endpoint for model control (fault injection)
    compression: str = "none"  # HTTP: the Accept-Encoding asked for; gRPC: the channel's compression
    contract: Contract | None = None  # how requests and images map onto the model's tensors (None: bls)
    fields: dict[str, str | None] = field(default_factory=dict)  # openai-images / nim: JSON keys (None: not sent)

    @property
    def model_name(self) -> str:
        if self.protocol in HTTP_JSON_PROTOCOLS:
            return self.model or ""  # sent only when given
        return self.model or (contract.BLS_STREAM if self.protocol == "grpc-stream" else contract.BLS)

    @property
    def model_contract(self) -> Contract:
        return self.contract or BLS


@dataclass
class VerifyConfig:
    """Checking each received image against its single run (the reference)."""

    enabled: bool = True
    sample_rate: float = 1.0  # the fraction of requests whose images are checked
    gate: Gate = GATES["auto"]  # when an image passes: auto, exact or the scenario's explicit thresholds
    save_mismatches: int = 5  # PNG triplets for the first N mismatches
    output_dir: str | None = None
    cache_dir: str | None = None  # references on disk, reused across runs (clear it when the weights change)


@dataclass
class CapacityConfig:
    """How `capacity` searches (the scenario's `capacity:` section; command-line flags override it)."""

    mode: str = "rate"  # "rate": constant arrival rate; "concurrency": constant concurrency
    start: float = 1.0
    max: float = 64.0
    step_duration_s: float = 20.0
    min_requests: int = 20  # rate mode: a step lasts long enough for this many requests
    repeats: int = 2
    precision: float = 0.1
    max_in_flight: int = 64  # rate mode: requests over this many in flight are dropped
    warmup: bool = True  # one step at the start load first, not counted


PhaseConfig = Executor  # a phase's configuration is its executor: the common fields plus the executor's own


@dataclass
class Scenario:
    name: str
    target: TargetConfig
    workload: WorkloadConfig
    phases: list[Executor]
    thresholds: list[Threshold] = field(default_factory=list)
    verify: VerifyConfig = field(default_factory=VerifyConfig)
    capacity: CapacityConfig = field(default_factory=CapacityConfig)
    faults: list[FaultConfig] = field(default_factory=list)
    on_agent_loss: str | None = None  # run --cluster: None runs on and fails the verdict; continue; abort
    description: str = ""
    source: str = "<scenario>"


# ---- sections ----------------------------------------------------------------------------------------------------
def _target(r: Reader, data: Any, path: str = "target") -> TargetConfig:
    data = r.mapping(data or {}, path, ("url", "urls", "protocol", "model", "request_timeout", "connect_timeout",
                                        "headers", "tls", "balance", "metrics_url", "control_url",
                                        "compression", "contract", "fields"))
    urls = data.get("urls", data.get("url"))
    if "url" in data and "urls" in data:
        r.problem(f"{path}.urls", "give either url or urls, not both")
    urls = [urls] if isinstance(urls, str) else urls
    if urls is not None and (not isinstance(urls, list) or not all(isinstance(u, str) and u for u in urls)):
        r.problem(f"{path}.urls", "must be a URL or a list of URLs")
        urls = None
    headers = data.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, (str, int)) for k, v in
                                                headers.items()):
        r.problem(f"{path}.headers", "must map header names to strings")
        headers = {}
    tls = None
    if data.get("tls") is not None:
        tls_data = r.mapping(data["tls"], f"{path}.tls", ("ca_file", "cert_file", "key_file"))
        tls = TlsConfig(**{k: str(v) for k, v in tls_data.items() if k in ("ca_file", "cert_file", "key_file")})
    timeout = lambda v: v > 0  # noqa: E731
    model_contract = parse_contract(r, data.get("contract"), f"{path}.contract")
    if data.get("contract") is not None and not data.get("model"):
        r.problem(f"{path}.model", "is required with target.contract (the model the contract describes)")
    return TargetConfig(contract=model_contract,
        urls=list(urls or []), protocol=r.choice(data, "protocol", path, PROTOCOLS, "grpc"),
        model=r.get(data, "model", path, str, None, bool, "must be a model name"),
        request_timeout_s=r.get(data, "request_timeout", path, parse_duration, 600.0, timeout, "must be > 0"),
        connect_timeout_s=r.get(data, "connect_timeout", path, parse_duration, 30.0, timeout, "must be > 0"),
        headers={str(k): str(v) for k, v in headers.items()}, tls=tls,
        balance=r.choice(data, "balance", path, BALANCE, "round-robin"),
        compression=r.choice(data, "compression", path, COMPRESSION, "none"),
        metrics_url=r.get(data, "metrics_url", path, str, None, lambda v: v.startswith(("http://", "https://")),
                          "must be an http:// or https:// URL"),
        control_url=r.get(data, "control_url", path, str, None, lambda v: v.startswith(("http://", "https://")),
                          "must be an http:// or https:// URL"),
        fields=read_fields(r, data.get("fields"), f"{path}.fields"))


def _phase(r: Reader, data: Any, index: int) -> Executor | None:
    path = f"phases[{index}]"
    if not isinstance(data, dict):
        r.problem(path, "must be a mapping")
        return None
    executor_name: Any = data.get("executor")  # anything the YAML holds
    executor = EXECUTORS.get(executor_name)
    if executor is None:
        r.problem(f"{path}.executor", f"must be one of {', '.join(EXECUTORS)}, got {data.get('executor')!r}")
        return None
    return executor.parse(r, data, path, name=str(data.get("name") or f"phase-{index + 1}"))


def _verify(r: Reader, data: Any, path: str = "verify") -> VerifyConfig:
    if isinstance(data, bool):
        return VerifyConfig(enabled=data)
    data = r.mapping(data or {}, path, ("enabled", "sample_rate", "gate", *THRESHOLD_KEYS, "save_mismatches",
                                        "output_dir", "cache_dir"))
    fraction = lambda v: 0 < v <= 1  # noqa: E731
    decibels = lambda v: 0 < v < 1000  # noqa: E731  (finite: the report is JSON)
    checks = {"min_psnr": (decibels, "must be in (0, 1000) dB"), "min_tile_psnr": (decibels, "must be in (0, 1000) dB"),
              "min_similarity": (fraction, "must be a fraction in (0, 1]"),
              "pixel_tolerance": (lambda v: 0 <= v < 1, "must be in [0, 1) (images are in [0, 1])"),
              "max_abs": (lambda v: 0 <= v < 1, "must be in [0, 1) (images are in [0, 1])"),
              "min_ssim": (fraction, "must be in (0, 1]")}
    thresholds = {key: r.get(data, key, path, number, None, *checks[key]) for key in THRESHOLD_KEYS}
    thresholds = {key: value for key, value in thresholds.items() if value is not None}
    name = r.choice(data, "gate", path, (*GATES, "explicit"), "explicit" if thresholds else "auto")
    if name != "explicit":
        for key in thresholds:
            r.problem(f"{path}.{key}", f"is a threshold of gate: explicit; gate {name!r} sets its own "
                                       f"({GATES[name].describe()}): remove it, or write gate: explicit")
        gate = GATES[name]
    elif not thresholds:
        r.problem(f"{path}.gate", f"explicit needs at least one threshold: {', '.join(THRESHOLD_KEYS)}")
        gate = GATES["auto"]
    else:
        gate = explicit_gate(thresholds)
    return VerifyConfig(
        enabled=r.get(data, "enabled", path, boolean, True,
                      expect="must be true or false"),
        sample_rate=r.get(data, "sample_rate", path, number, 1.0, fraction, "must be a fraction in (0, 1]"),
        gate=gate,
        save_mismatches=r.get(data, "save_mismatches", path, integer, 5, lambda v: v >= 0, "must be an integer >= 0"),
        output_dir=r.get(data, "output_dir", path, str, None), cache_dir=r.get(data, "cache_dir", path, str, None))


def _capacity(r: Reader, data: Any, path: str = "capacity") -> CapacityConfig:
    data = r.mapping(data or {}, path, ("mode", "start", "max", "step_duration", "min_requests", "repeats",
                                        "precision", "max_in_flight", "warmup"))
    mode = r.choice(data, "mode", path, ("rate", "concurrency"), "rate")
    positive = lambda v: v > 0  # noqa: E731
    config = CapacityConfig(
        mode=mode, start=r.get(data, "start", path, number, 1.0, positive, "must be > 0"),
        max=r.get(data, "max", path, number, 64.0, positive, "must be > 0"),
        step_duration_s=r.get(data, "step_duration", path, parse_duration, 20.0, positive, "must be > 0"),
        min_requests=r.get(data, "min_requests", path, integer, 20, lambda v: v >= 1, "must be an integer >= 1"),
        repeats=r.get(data, "repeats", path, integer, 2, lambda v: v >= 1, "must be an integer >= 1"),
        precision=r.get(data, "precision", path, number, 0.1, lambda v: 0 < v < 1, "must be in (0, 1)"),
        max_in_flight=r.get(data, "max_in_flight", path, integer, 64, lambda v: v >= 1, "must be an integer >= 1"),
        warmup=r.get(data, "warmup", path, boolean, True,
                     expect="must be true or false"))
    if config.max < config.start:
        r.problem(f"{path}.max", f"must be >= start ({config.start:g}), got {config.max:g}")
    if mode == "concurrency" and (config.start != int(config.start) or config.max != int(config.max)):
        r.problem(path, "in concurrency mode start and max are whole numbers of requests in flight")
    return config


def parse_scenario(data: Any, source: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    """Build a `Scenario` from parsed YAML; raises `ScenarioError` listing every problem."""
    base_dir = base_dir or Path.cwd()
    r = Reader(base_dir)
    data = r.mapping(data, "scenario", ("name", "description", "target", "workload", "phases", "thresholds",
                                        "verify", "capacity", "faults", "on_agent_loss"), ("workload",))
    if not isinstance(data, dict):
        raise ScenarioError(source, r.problems)
    phases_data = data.get("phases")
    if phases_data is None and "capacity" not in data:
        r.problem("scenario.phases", "is required (only a scenario with a capacity section may leave it out)")
    if phases_data is not None and (not isinstance(phases_data, list) or not phases_data):
        r.problem("phases", "must be a non-empty list of phases")
        phases_data = []
    phases = [p for p in (_phase(r, item, i) for i, item in enumerate(phases_data or [])) if p is not None]
    names = [p.name for p in phases]
    for name in {n for n in names if names.count(n) > 1}:
        r.problem("phases", f"phase name {name!r} is used more than once")
    scenario = Scenario(name=str(data.get("name") or Path(source).stem), description=str(data.get("description", "")),
                        target=_target(r, data.get("target")),
                        workload=parse_workload(r, data.get("workload") or {}, base_dir), phases=phases,
                        thresholds=r.thresholds(data.get("thresholds"), "thresholds"),
                        verify=_verify(r, data.get("verify")), capacity=_capacity(r, data.get("capacity")),
                        faults=parse_faults(r, data.get("faults")), source=source,
                        on_agent_loss=r.get(data, "on_agent_loss", "scenario", str, None,
                                            lambda v: v in ("continue", "abort"), "must be continue or abort"))
    # what the protocol cannot do (checked again when --protocol overrides it: run/session.py)
    r.problems += protocol_problems(scenario.target, scenario.workload)
    scoped = [("thresholds", scenario.thresholds)] + [(f"phases[{i}].thresholds", p.thresholds)
                                                      for i, p in enumerate(scenario.phases)]
    for path, thresholds in scoped:
        for threshold in thresholds:
            problem = unknown_class(threshold, scenario)
            if problem:
                r.problem(path, problem)
    if r.problems:
        raise ScenarioError(source, r.problems)
    return scenario



def unknown_class(threshold: Threshold, scenario: Scenario) -> str | None:
    """Why `threshold`'s class scope names no class the scenario can send (None: it does, or it has no scope). A
    trace may bring classes of its own, so with a trace phase any name goes."""
    name, classes = threshold.request_class, scenario.workload.classes
    if name is None or name in classes or any(p.executor == "trace" for p in scenario.phases):
        return None
    known = f"its classes: {', '.join(classes)}" if classes else "it has none (add workload.classes)"
    return f"{threshold.expr!r} names class {name!r}, which the workload does not have ({known})"


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(str(path), [f"scenario: cannot read the file: {exc}"]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError(str(path), [f"scenario: not valid YAML: {exc}"]) from None
    return parse_scenario(data, str(path), path.parent)
