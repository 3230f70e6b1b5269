"""A load-generator agent: one Ray actor running its share of a scenario (`run`) or of each capacity step (`open`,
`step`, `close`) with the same engine as `run` and `capacity`, polled by the coordinator for its interval log and
cumulative counts (the poll is the heartbeat), stopped on request."""

from __future__ import annotations

import io
import os
import socket
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from flux_async.measure.recorder import encode_part
from flux_async.run.capacity import LocalSteps
from flux_async.run.session import RunOptions, Session, session
from flux_async.scenario.config import Scenario
from flux_async.scenario.executors import Executor


class LoadAgent:
    """Agent `index` of `count` (wrapped by `ray.remote` in cluster/coordinator.py). Its clock is its own
    `perf_counter_ns`: intended start and completion of every request are taken here, so latency stays exact."""

    def __init__(self, index: int, count: int):
        self.index, self.count = index, count
        self.folder = Path(tempfile.mkdtemp(prefix=f"flux_async_agent{index}_"))
        self.engine = self.recorder = None
        self._hlog_read = 0  # bytes of the interval log already sent
        self.timeline = None
        self._rows_sent = 0  # timeline rows already sent
        self._stack: AsyncExitStack | None = None  # a capacity search's open session
        self._session: Session | None = None
        self._steps: LocalSteps | None = None

    def where(self) -> dict:
        """The node this agent runs on: Ray's node id, its address, host name and process."""
        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "address": ray.util.get_node_ip_address(),
                "host": socket.gethostname(), "pid": os.getpid()}

    def clock(self) -> int:
        """This agent's monotonic clock (the coordinator measures its offset by round trips)."""
        return time.perf_counter_ns()

    async def run(self, scenario: Scenario, options: RunOptions, start_at_ns: int, references: dict,
                  files: dict[str, bytes] | None = None) -> dict:
        """Run this agent's share from `start_at_ns` (its own clock): the worker report (with its encoded histograms)
        and the interval log's text. `references`: the verification references the coordinator computed; `files`:
        the coordinator's copies of the files the phases read (traces), used in place of this host's."""
        from flux_async.run.runner import run_session

        scenario = self._with_copies(scenario, files or {})

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
                "request_log": (self.folder / "agent.jsonl").read_text() if options.request_log else None,
                "mismatch_files": mismatch_files(report["verification"])}

    def _with_copies(self, scenario: Scenario, files: dict[str, bytes]) -> Scenario:
        """The scenario reading the coordinator's copies of its files, written into this agent's folder."""
        paths = {}
        for number, (name, data) in enumerate(files.items()):
            copy = self.folder / "files" / f"{number}-{Path(name).name}"
            copy.parent.mkdir(exist_ok=True)
            copy.write_bytes(data)
            paths[Path(name)] = copy
        return replace(scenario, phases=[phase.relocated(paths) for phase in scenario.phases])

    async def open(self, scenario: Scenario, options: RunOptions, references: dict) -> None:
        """A capacity search's start: open the target and the verifier (holding the coordinator's `references`),
        kept open for every step until `close`."""
        options = replace(options, report=None, html=None, plot=None, progress=False,
                          mismatch_dir=self.folder / "mismatches")
        self._stack = AsyncExitStack()
        self._session = await self._stack.enter_async_context(
            session(scenario, options, Console(file=io.StringIO()), references=references))

    async def step(self, phase: Executor, start_at_ns: int, share: tuple[int, int]) -> dict:
        """Run share `share` (index, count) of one capacity step's `phase` from `start_at_ns` (this agent's clock):
        its recorder as a part to add (recorder.encode_part), completion instants from the start, and the rest of
        what the search judges (run/capacity.py StepResult)."""
        assert self._session is not None, "open() first"
        s = self._session
        self._steps = steps = LocalSteps(s.scenario, s.target, s.verifier, job_stream=share[0])
        result = await steps.run(phase.split(*share), start_at_ns)
        return {"part": encode_part(result.recorder), "done_ns": [n - start_at_ns for n in result.completions.done_ns],
                "duration_s": result.duration_s, "stages": result.stages, "interrupted": result.interrupted,
                "client": result.client, "verification": result.verification,
                "class_verification": result.class_verification}

    async def close(self) -> dict:
        """A capacity search's end: the verification summary and its mismatch images; the session closed."""
        s, summary = self._session, None
        if s is not None and s.verifier is not None:
            await s.verifier.settle()
            summary = s.verifier.summary()
        if self._stack is not None:
            await self._stack.aclose()
        self._stack = self._session = self._steps = None
        return {"verification": summary, "mismatch_files": mismatch_files(summary or {})}

    def _attach(self, start_at_ns: int, engine, recorder, hlog, timeline) -> None:
        self.engine, self.recorder, self.timeline = engine, recorder, timeline
        hlog.start_ns = start_at_ns  # interval offsets from the common start: the coordinator adds them by index
        timeline.start_ns = start_at_ns  # rows' t from the common start too

    def _new_rows(self) -> list[dict]:
        """The timeline rows made since the last call (a capacity step keeps no timeline)."""
        if self.timeline is None or self._steps is not None:
            return []
        rows = self.timeline.rows[self._rows_sent:]
        self._rows_sent += len(rows)
        return rows

    def _new_hlog_lines(self) -> str:
        """What the interval log gained since the last call (read from where that one stopped); a capacity step
        writes none."""
        if not (self.folder / "agent.hlog").is_file():
            return ""
        with open(self.folder / "agent.hlog", "rb") as log:
            log.seek(self._hlog_read)
            data = log.read()
        self._hlog_read += len(data)
        return data.decode("ascii")

    def poll(self) -> dict:
        """The heartbeat: new interval-log lines and timeline rows since the last poll, cumulative histograms and
        counters, requests in flight and the current phase (what the coordinator keeps should this agent be lost)."""
        engine, recorder = self.engine, self.recorder
        if self._steps is not None:
            engine, recorder = self._steps.engine, self._steps.recorder
        if engine is None or recorder is None:
            return {"started": False}
        return {"started": True, "hlog": self._new_hlog_lines(), "rows": self._new_rows(), **encode_part(recorder),
                "in_flight": engine.in_flight, "phase": engine.current.name if engine.current else None,
                "phases": [{"name": p.name, "executor": p.config.executor, "warmup": p.config.warmup,
                            "duration_s": round(p.duration_s, 3)} for p in engine.phases if p.started_ns]}

    def stop(self, reason: str) -> None:
        engine = self._steps.engine if self._steps is not None else self.engine
        if engine is not None:
            engine.stop(reason)


def mismatch_files(summary: dict) -> dict[str, bytes]:
    """The images the verification summary's mismatch examples name, read here: the coordinator's host cannot read
    this one's files, so they travel with the result and land in one gallery there."""
    files = {}
    for example in summary.get("mismatch_examples") or []:
        for name in example.get("files") or []:
            try:
                files[name] = Path(name).read_bytes()
            except OSError:
                continue
    return files

