"""A load-generator agent: one Ray actor running its share of a scenario with the same engine as `run`, polled by
the coordinator for its interval log and cumulative counts (the poll is the heartbeat), stopped on request."""

from __future__ import annotations

import io
import os
import socket
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

from rich.console import Console

from flux_async.measure.recorder import encode_histograms
from flux_async.run.session import RunOptions, Session
from flux_async.scenario.config import Scenario
from flux_async.targets.factory import make_target
from flux_async.verification.verifier import Verifier


class LoadAgent:
    """Agent `index` of `count` (wrapped by `ray.remote` in cluster/coordinator.py). Its clock is its own
    `perf_counter_ns`: intended start and completion of every request are taken here, so latency stays exact."""

    def __init__(self, index: int, count: int):
        self.index, self.count = index, count
        self.folder = Path(tempfile.mkdtemp(prefix=f"flux_async_agent{index}_"))
        self.engine = self.recorder = self.hlog = None
        self._hlog_read = 0
        self.started_epoch_s: float | None = None

    def where(self) -> dict:
        """The node this agent runs on: Ray's node id, its address, host name and process."""
        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "address": ray.util.get_node_ip_address(),
                "host": socket.gethostname(), "pid": os.getpid()}

    def clock(self) -> int:
        """This agent's monotonic clock (the coordinator measures its offset by round trips)."""
        return time.perf_counter_ns()

    async def run(self, scenario: Scenario, options: RunOptions, start_at_ns: int, references: dict) -> dict:
        """Run this agent's share from `start_at_ns` (its own clock): the worker report (with its encoded histograms)
        and the interval log's text. `references`: the verification references the coordinator computed."""
        from flux_async.run.runner import run_session

        options = replace(options, worker=(self.index, self.count), report=None, html=None, plot=None,
                          hlog=self.folder / "agent.hlog", mismatch_dir=self.folder / "mismatches", progress=False,
                          request_log=self.folder / "agent.jsonl" if options.request_log else None)
        target = make_target(scenario.target)
        await target.open()
        verifier = None
        try:
            if scenario.verify.enabled and options.verify:
                verifier = Verifier(scenario.verify, scenario.target, options.mismatch_dir or self.folder)
                await verifier.open(scenario.workload)
                verifier.adopt(references)  # computed once, by the coordinator: never again per agent
            session = Session(scenario, target, verifier, embedded=False)
            report, _ = await run_session(session, options, Console(file=io.StringIO()), start_at_ns=start_at_ns,
                                   on_engine=lambda *parts: self._attach(start_at_ns, *parts),
                                   handle_signals=False)
        finally:
            if verifier is not None:
                await verifier.close()
            await target.close()
        return {"report": report, "hlog": self._hlog_text(),
                "request_log": (self.folder / "agent.jsonl").read_text() if options.request_log else None}

    def _attach(self, start_at_ns: int, engine, recorder, hlog) -> None:
        self.engine, self.recorder, self.hlog = engine, recorder, hlog
        hlog.start_ns = start_at_ns  # interval offsets from the common start: the coordinator adds them by index

    def _hlog_text(self, since: int = 0) -> str:
        path = self.folder / "agent.hlog"
        return path.read_text(encoding="utf-8")[since:] if path.is_file() else ""

    def poll(self) -> dict:
        """The heartbeat: new interval-log lines since the last poll, cumulative histograms and counters, requests in
        flight and the current phase (what the coordinator keeps should this agent be lost)."""
        if self.engine is None:
            return {"started": False}
        text = self._hlog_text(self._hlog_read)
        self._hlog_read += len(text)
        recorder, engine = self.recorder, self.engine
        return {"started": True, "hlog": text,
                "histograms": encode_histograms(recorder),
                "counters": {phase: _counters(c) for phase, c in recorder.counters.items()},
                "class_counters": {f"{phase}\t{name}": _counters(c)
                                   for (phase, name), c in recorder.class_counters.items()},
                "in_flight": engine.in_flight, "phase": engine.current.name if engine.current else None,
                "phases": [{"name": p.name, "executor": p.config.executor, "warmup": p.config.warmup,
                            "duration_s": round(p.duration_s, 3)} for p in engine.phases if p.started_ns]}

    def stop(self, reason: str) -> None:
        if self.engine is not None:
            self.engine.stop(reason)


def _counters(counters) -> dict:
    """A Counters as plain data (its errors_by_kind is a defaultdict, which asdict cannot copy)."""
    return {f.name: dict(getattr(counters, f.name)) if f.name in ("errors_by_kind", "error_examples")
            else getattr(counters, f.name) for f in fields(counters)}
