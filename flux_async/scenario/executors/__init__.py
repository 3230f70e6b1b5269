"""Executors: how a phase generates its load. One class per executor; `EXECUTORS` maps each YAML name to its class
(adding one: a new module here and a line below)."""

from __future__ import annotations

from flux_async.scenario.executors.base import ClosedLoop, Executor, OpenLoop
from flux_async.scenario.executors.burst import Burst
from flux_async.scenario.executors.constant_arrival_rate import ConstantArrivalRate
from flux_async.scenario.executors.constant_concurrency import ConstantConcurrency
from flux_async.scenario.executors.poisson_arrival_rate import PoissonArrivalRate
from flux_async.scenario.executors.ramping import RampingArrivalRate, RampingConcurrency
from flux_async.scenario.executors.trace import TraceReplay

EXECUTORS: dict[str, type[Executor]] = {executor.executor: executor for executor in (
    ConstantConcurrency, RampingConcurrency, ConstantArrivalRate, PoissonArrivalRate, RampingArrivalRate, Burst,
    TraceReplay)}

__all__ = ["EXECUTORS", "Burst", "ClosedLoop", "ConstantArrivalRate", "ConstantConcurrency", "Executor", "OpenLoop",
           "PoissonArrivalRate", "RampingArrivalRate", "RampingConcurrency", "TraceReplay"]
