"""A load-generator agent: one Ray actor running its share of a scenario with the same engine as `run`, polled by
the coordinator for its interval log and cumulative counts (the poll is the heartbeat), stopped on request."""

from __future__ import annotations

import io
import os
import socket
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from flux_async.measure.recorder import encode_histograms
from flux_async.run.session import RunOptions, session
from flux_async.scenario.config import Scenario


class LoadAgent:
    """Agent `index` of `count` (wrapped by `ray.remote` in cluster/coordinator.py). Its clock is its own
    `perf_counter_ns`: intended start and completion of every request are taken here, so latency stays exact."""

    def __init__(self, index: int, count: int):
        self.index, self.count = index, count
        self.folder = Path(tempfile.mkdtemp(prefix=f"flux_async_agent{index}_"))
        self.engine = self.recorder = None
        self._hlog_read = 0  # bytes of the interval log already sent

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
        console = Console(file=io.StringIO())
        # the references were computed once, by the coordinator: never again per agent
        async with session(scenario, options, console, references=references) as s:
            report, _ = await run_session(s, options, console, start_at_ns=start_at_ns,
                                          on_engine=lambda *parts: self._attach(start_at_ns, *parts),
                                          handle_signals=False)
        return {"report": report, "hlog": (self.folder / "agent.hlog").read_text(encoding="utf-8"),
                "request_log": (self.folder / "agent.jsonl").read_text() if options.request_log else None}

    def _attach(self, start_at_ns: int, engine, recorder, hlog) -> None:
        self.engine, self.recorder = engine, recorder
        hlog.start_ns = start_at_ns  # interval offsets from the common start: the coordinator adds them by index

    def _new_hlog_lines(self) -> str:
        """What the interval log gained since the last call (read from where that one stopped)."""
        with open(self.folder / "agent.hlog", "rb") as log:
            log.seek(self._hlog_read)
            data = log.read()
        self._hlog_read += len(data)
        return data.decode("ascii")

    def poll(self) -> dict:
        """The heartbeat: new interval-log lines since the last poll, cumulative histograms and counters, requests in
        flight and the current phase (what the coordinator keeps should this agent be lost)."""
        if self.engine is None:
            return {"started": False}
        recorder, engine = self.recorder, self.engine
        return {"started": True, "hlog": self._new_hlog_lines(),
                "histograms": encode_histograms(recorder),
                "counters": {phase: c.to_dict() for phase, c in recorder.counters.items()},
                "class_counters": {f"{phase}\t{name}": c.to_dict()
                                   for (phase, name), c in recorder.class_counters.items()},
                "in_flight": engine.in_flight, "phase": engine.current.name if engine.current else None,
                "phases": [{"name": p.name, "executor": p.config.executor, "warmup": p.config.warmup,
                            "duration_s": round(p.duration_s, 3)} for p in engine.phases if p.started_ns]}

    def stop(self, reason: str) -> None:
        if self.engine is not None:
            self.engine.stop(reason)

