"""The asyncio load engine: runs a scenario's phases in order against a target and records every result.

Open-loop executors (arrival rates, bursts) send each request at its intended start time from the pacer; a request
that would exceed the phase's `max_in_flight` at its time is counted as dropped, never sent late. Closed-loop
executors (concurrency) keep N requests in flight; their intended start is when a virtual user is free. Latency is
measured from the intended start (wrk2's correction for coordinated omission), service time from the actual send.
Every await is bounded; `stop()` (Ctrl-C, SIGTERM) ends scheduling, lets requests in flight finish within a grace
period, and cancels the rest.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from flux_async.measure import attribution
from flux_async.measure.recorder import SERVER_TIMING, Interval, Recorder, merge_intervals
from flux_async.scenario.config import Scenario
from flux_async.scenario.executors import ClosedLoop, Executor, OpenLoop
from flux_async.scenario.trace_file import TraceLine
from flux_async.scenario.workload import Job, JobSource
from flux_async.targets.base import Outcome, Target
from flux_async.verification.verifier import Verifier, keep

NS = 1_000_000_000
EARLY_S = 0.0005  # a request may leave this much before its intended time (half the loop's timer resolution)


@dataclass
class PhaseRun:
    """How a phase went: timing and state the report and the progress display need."""

    config: Executor
    started_ns: int = 0
    ended_ns: int = 0
    scheduled: int = 0  # requests the schedule asked for (sent + dropped)
    planned_s: float | None = None
    finished: bool = False
    stages: dict | None = None  # per-model deltas of Triton's statistics (None: not available)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def duration_s(self) -> float:
        end = self.ended_ns or time.perf_counter_ns()
        return max(0.0, (end - self.started_ns) / NS) if self.started_ns else 0.0


@dataclass
class RunResult:
    phases: list[PhaseRun]
    started_at: datetime
    wall_s: float
    interrupted: bool
    target_url: str
    protocol: str
    model: str
    stop_reason: str | None = None


if sys.version_info >= (3, 11):  # Python 3.11+: a timer on the running task, no extra task per request
    _deadline = asyncio.timeout
else:  # pragma: no cover - Python 3.10
    import contextlib

    @contextlib.asynccontextmanager
    async def _deadline(seconds: float):
        task = asyncio.current_task()
        assert task is not None  # called from a coroutine, so within a task
        handle = asyncio.get_running_loop().call_later(seconds, task.cancel)
        try:
            yield
        except asyncio.CancelledError:
            raise TimeoutError() from None
        finally:
            handle.cancel()


Observer = Callable[[str, Job, Outcome], None]  # (phase name, job, outcome), called as each request ends


class RequestLogger(Protocol):
    """Where `run --request-log` writes each request (flux_async/run/request_log.py): a ticket per request in the
    order they are scheduled, then its outcome, or that it was dropped."""

    def start(self, origin_ns: int) -> None: ...
    def reserve(self) -> int: ...
    def done(self, ticket: int, phase: str, job: Job, intended_ns: int, outcome: Outcome) -> None: ...
    def dropped(self, ticket: int, phase: str, job: Job, intended_ns: int) -> None: ...


class Engine:
    """Runs `scenario` against `target`, recording into `recorder`; `observers` see every request's outcome."""

    _interval_start: int  # perf_counter_ns of the current interval's start, from run()

    def __init__(self, scenario: Scenario, target: Target, recorder: Recorder, *, max_phase_s: float | None = None,
                 interval_s: float = 1.0, listeners: Iterable[Callable[[Interval], None]] = (),
                 samplers: dict[str, Callable] | None = None, grace_s: float | None = None,
                 verifier: Verifier | None = None, job_stream: int = 0, observers: Iterable[Observer] = (),
                 lost_after_s: float | None = 5.0, request_log: RequestLogger | None = None):
        self.scenario, self.target, self.recorder, self.verifier = scenario, target, recorder, verifier
        self.max_phase_s, self.interval_s = max_phase_s, interval_s
        self.listeners, self.samplers = list(listeners), dict(samplers or {})
        self.observers = list(observers)  # called with (phase, job, outcome) as each request ends
        self.request_log = request_log  # one line per request (run --request-log)
        self.lost_after_s = lost_after_s  # stop when the target is not live this long (None: never)
        self.stop_reason: str | None = None
        self.request_timeout_s = scenario.target.request_timeout_s
        self.grace_s = grace_s if grace_s is not None else min(self.request_timeout_s, 30.0)
        self.jobs = JobSource(scenario.workload, stream=job_stream)
        self.phases = [PhaseRun(p) for p in scenario.phases]
        self.current: PhaseRun | None = None
        self.in_flight = 0  # requests handed to a task (counted at once: a burst cannot overrun max_in_flight)
        self._tasks: set[asyncio.Task] = set()
        self._stop = asyncio.Event()
        self._stop_requested = False
        self._stop_count = 0
        # One writer each, so the GIL keeps them whole (a free-threaded build would need a lock or atomics):
        self._due = 0  # requests whose intended start has come (the pacing thread, or a closed-loop virtual user)
        self._taken = 0  # of those, handed to the target or dropped (the loop)
        self.outbound_queue_max = 0  # the most requests due but not yet sent at two interval ends in a row
        self._last_queue = 0
        self.loop_busy_max = 0.0  # the event loop thread's CPU over wall time, in its busiest interval
        self._loop_cpu = time.thread_time()  # reset at run() on the loop's thread
        self._held: Interval | None = None  # the last interval, emitted when the next one shows it was complete

    # ---- control ---------------------------------------------------------------------------------------------
    def stop(self, reason: str = "stopped by a signal") -> None:
        """Graceful stop; a second call cancels requests in flight at once."""
        self.stop_reason = self.stop_reason or reason
        self._stop_count += 1
        self._stop_requested = True  # read by the pacing thread
        self._stop.set()
        if self._stop_count > 1:
            for task in list(self._tasks):
                task.cancel()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def outbound_queue(self) -> int:
        """Requests whose intended start has come but which the loop has not yet handed to the target: a tester
        that cannot keep up with its own schedule shows here first."""
        return max(0, self._due - self._taken)

    async def _sleep_until(self, when_ns: int) -> bool:
        """Sleep until `when_ns` (perf_counter); False if a stop came first (noticed within 0.25 s).

        Event-loop timers have a resolution of 1 ms (uvloop rounds to the nearest ms): a request whose time is less
        than half of that away is due now, so it leaves at most 0.5 ms early instead of being spun for."""
        while not self.stopping:
            delay = (when_ns - time.perf_counter_ns()) / NS
            if delay <= EARLY_S:
                return True
            await asyncio.sleep(min(delay, 0.25))  # a plain timer: no task per request
        return False

    # ---- requests --------------------------------------------------------------------------------------------
    async def _send(self, phase: PhaseRun, intended_ns: int, job: Job, ticket: int = -1) -> None:
        """Send `job` (counted in `in_flight` by the caller, before this task ran) and record its outcome."""
        job = keep(job, self.verifier)
        self.recorder.count(phase.name, "sent", request_class=job.request_class or "")
        self._taken += 1
        try:
            async with _deadline(self.request_timeout_s + 5):  # targets time out first; this bounds a stuck one
                outcome = await self.target.send(job)
        except (asyncio.TimeoutError, TimeoutError):
            outcome = Outcome(intended_ns, time.perf_counter_ns(), False, error_kind="timeout",
                              error=f"no answer within {self.request_timeout_s + 5:.0f} s")
        except asyncio.CancelledError:
            outcome = Outcome(intended_ns, time.perf_counter_ns(), False, error_kind="cancelled",
                              error="cancelled when the run stopped")
        finally:
            self.in_flight -= 1
        self._record(phase, job, intended_ns, outcome)
        if self.request_log is not None:
            self.request_log.done(ticket, phase.name, job, intended_ns, outcome)
        for observer in self.observers:
            observer(phase.name, job, outcome)
        if outcome.ok and job.verify:
            assert self.verifier is not None  # keep() marks a job for verification only when there is a verifier
            self.verifier.submit(phase.name, job, outcome)

    def _record(self, phase: PhaseRun, job: Job, intended_ns: int, outcome: Outcome) -> None:
        protocol, prompts, klass = self.target.protocol, len(job.prompts), job.request_class or ""
        name = phase.name

        def record(metric: str, value_us: int) -> None:
            self.recorder.record(name, metric, protocol, prompts, value_us, klass)

        def count(field_name: str, amount: int = 1, **error) -> None:
            self.recorder.count(name, field_name, amount, request_class=klass, **error)

        record("lag", max(0, outcome.sent_ns - intended_ns) // 1000)  # early: 0
        if not outcome.ok:
            count("errors", kind=outcome.error_kind or "error", message=outcome.error)
            return
        count("ok")
        count("images_ok", outcome.images)
        latency_us, service_us = (outcome.done_ns - intended_ns) // 1000, (outcome.done_ns - outcome.sent_ns) // 1000
        record("latency", latency_us)
        record("service", service_us)
        ttfr_us = None if outcome.first_ns is None else (outcome.first_ns - outcome.sent_ns) // 1000
        if ttfr_us is not None:
            record("ttfr", ttfr_us)
        for timing, ms in (outcome.server_timing or {}).items():  # the server's own durations (Server-Timing)
            record(SERVER_TIMING + timing, round(ms * 1000))
        slo = self.scenario.workload.slo_of(job.request_class)
        if slo is None or slo.met(latency_us / 1000, service_us / 1000, None if ttfr_us is None else ttfr_us / 1000):
            count("good")  # goodput: succeeded within its class's objective (or succeeded, where there is none)

    def _job(self, line: TraceLine | None) -> Job:
        """The next request: the workload's draw, or a trace line's own."""
        return self.jobs.next() if line is None else self.jobs.from_trace(line)

    def _ticket(self) -> int:
        """The request's place in the request log (-1: no log)."""
        return self.request_log.reserve() if self.request_log is not None else -1

    def _spawn(self, phase: PhaseRun, intended_ns: int, job: Job) -> None:
        self.in_flight += 1  # now, not when the task first runs: arrivals due together see each other
        task = asyncio.create_task(self._send(phase, intended_ns, job, self._ticket()))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ---- executors -------------------------------------------------------------------------------------------
    async def _open_loop(self, phase: PhaseRun, schedule: Iterator[tuple[float, TraceLine | None]]) -> None:
        """A pacing thread sleeps (with the OS's sub-millisecond timers, not the event loop's 1 ms ones) until each
        intended time and hands the request to the loop, which sends it or, over the in-flight cap, drops it. A
        dropped request still takes its job (request k of a schedule is the same whatever was dropped before it)."""
        loop, done = asyncio.get_running_loop(), asyncio.Event()
        cap = phase.config.max_in_flight

        def dispatch(intended: int, line: TraceLine | None) -> None:
            phase.scheduled += 1
            job = self._job(line)
            if cap is not None and self.in_flight >= cap:
                self._taken += 1
                self.recorder.count(phase.name, "dropped", request_class=job.request_class or "")
                if self.request_log is not None:
                    self.request_log.dropped(self._ticket(), phase.name, job, intended)
            else:
                self._spawn(phase, intended, job)

        def pace() -> None:
            try:
                for offset, line in schedule:
                    intended = phase.started_ns + int(offset * NS)
                    while not self._stop_requested:
                        delay = (intended - time.perf_counter_ns()) / NS
                        if delay <= 0:
                            break
                        time.sleep(min(delay, 0.25))
                    if self._stop_requested:
                        return
                    self._due += 1
                    loop.call_soon_threadsafe(dispatch, intended, line)
            finally:
                loop.call_soon_threadsafe(done.set)

        thread = threading.Thread(target=pace, name=f"flux_async-pacer-{phase.name}", daemon=True)
        thread.start()
        try:
            await done.wait()
        except asyncio.CancelledError:
            self._stop_requested = True
            raise
        finally:
            thread.join(timeout=1.0)  # it has finished, or notices the stop within 0.25 s

    async def _closed_loop(self, phase: PhaseRun, config: ClosedLoop, length_s: float | None) -> None:
        deadline = phase.started_ns + int(length_s * NS) if length_s else None

        async def virtual_user(index: int) -> None:  # k6's VU: one request in flight at a time
            while not self.stopping:
                now = time.perf_counter_ns()
                if deadline is not None and now >= deadline:
                    return
                if config.requests is not None and phase.scheduled >= config.requests:
                    return
                if index >= config.concurrency_at((now - phase.started_ns) / NS):
                    await self._sleep_until(now + NS // 20)
                    continue
                phase.scheduled += 1
                self._due += 1
                self.in_flight += 1
                await self._send(phase, now, self.jobs.next(), self._ticket())

        await asyncio.gather(*(virtual_user(i) for i in range(config.peak_concurrency)))

    async def _drain(self, phase: PhaseRun) -> None:
        """Wait for the phase's requests in flight: up to the request timeout, or the grace period once stopping."""
        deadline = time.perf_counter_ns() + int((self.request_timeout_s + 10) * NS)
        while self._tasks:
            if self.stopping:
                deadline = min(deadline, time.perf_counter_ns() + int(self.grace_s * NS))
            remaining = (deadline - time.perf_counter_ns()) / NS
            if remaining <= 0:
                break
            await asyncio.wait(list(self._tasks), timeout=min(remaining, 0.2))
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)

    async def _statistics(self) -> dict | None:
        """Triton's statistics of every model now, or None (fake target, or no answer within 10 s)."""
        try:
            return await asyncio.wait_for(self.target.statistics(), 10)
        except Exception:
            return None

    async def _run_phase(self, phase: PhaseRun) -> None:
        config = phase.config
        phase.planned_s = config.planned_s(self.max_phase_s)
        before = await self._statistics()
        phase.started_ns = time.perf_counter_ns()
        self.current = phase
        try:
            if isinstance(config, ClosedLoop):
                await self._closed_loop(phase, config, phase.planned_s)
            else:
                assert isinstance(config, OpenLoop)  # every executor is open- or closed-loop
                await self._open_loop(phase, config.schedule(self.max_phase_s))
        finally:
            await self._drain(phase)
            phase.ended_ns = time.perf_counter_ns()
            phase.finished = not self.stopping
            after = await self._statistics() if before is not None else None
            # `after` is read only when `before` was
            phase.stages = attribution.delta(before, after) if before is not None and after is not None else None
            if self.verifier is not None:  # after the phase's clock: references it still needs come at low load
                await self.verifier.settle()

    async def _sample(self) -> dict:
        """Readings of every sampler (GPU memory, Triton's /metrics, ...); a sampler that fails gives None."""
        samples = {}
        for name, sampler in self.samplers.items():
            try:
                samples[name] = await asyncio.wait_for(sampler(), max(self.interval_s, 1.0))
            except Exception:
                samples[name] = None
        return samples

    async def _close_interval(self, final: bool = False) -> None:
        """Read the samplers, then close the current interval (nothing is taken before the await, so a run that
        ends during a reading loses nothing). Each interval is held until the next one closes, so that the run's
        last interval, shorter than the others, is merged into the one before it instead of reporting rates over
        its stub."""
        samples = await self._sample()
        end, loop_cpu = time.perf_counter_ns(), time.thread_time()  # on the loop's thread: the loop's own CPU
        histograms, counters = self.recorder.take_interval()
        queue = self.outbound_queue
        self.outbound_queue_max = max(self.outbound_queue_max, min(queue, self._last_queue))  # held, not a blip
        self._last_queue = queue
        start, self._interval_start = self._interval_start, end
        cpu, self._loop_cpu = loop_cpu - self._loop_cpu, loop_cpu
        samples.update(outbound_queue=queue, loop_cpu_s=round(cpu, 6))
        interval = Interval(start, end, histograms, counters, samples)
        held, self._held = self._held, interval
        if not final:
            ready = [held]
        elif held is not None and (end - start) < self.interval_s * NS:
            combine = {name: sampler.combine for name, sampler in self.samplers.items() if hasattr(sampler, "combine")}
            ready = [merge_intervals(held, interval, {**combine, "loop_cpu_s": lambda a, b: a + b})]
        else:
            ready = [held, interval]
        for item in ready:
            if item is not None:
                seconds = (item.end_ns - item.start_ns) / NS
                self.loop_busy_max = max(self.loop_busy_max, item.samples["loop_cpu_s"] / seconds if seconds else 0)
                for listener in self.listeners:
                    listener(item)

    async def _intervals(self) -> None:
        """Close an interval every `interval_s` on a fixed grid from the run's start (readings may delay a close,
        but the delays do not add up: the rows of several workers stay aligned)."""
        tick = self._interval_start
        while True:
            tick += int(self.interval_s * NS)
            delay = (tick - time.perf_counter_ns()) / NS
            if delay <= 0:  # a blocked loop overran a whole interval: the grid restarts from now (closing now
                tick = time.perf_counter_ns()  # would leave a stub of a few ms, whose rates mean nothing)
                continue
            await asyncio.sleep(delay)
            await self._close_interval()

    async def _watchdog(self) -> None:
        """Stop the run when the target stops answering its liveness check for `lost_after_s` (a dead server)."""
        down_since = None
        while True:
            await asyncio.sleep(1.0)
            if await self.target.live():
                down_since = None
                continue
            down_since = down_since or time.perf_counter()
            assert self.lost_after_s is not None  # run() starts the watchdog only with a limit
            if time.perf_counter() - down_since >= self.lost_after_s:
                self.stop(f"target lost: {self.target.url} did not answer its liveness check for "
                          f"{self.lost_after_s:g} s")
                return

    async def run(self) -> RunResult:
        started_at, started = datetime.now(timezone.utc), time.perf_counter_ns()
        self._interval_start, self._loop_cpu = started, time.thread_time()
        if self.request_log is not None:
            self.request_log.start(started)
        ticker = asyncio.create_task(self._intervals())
        watchdog = asyncio.create_task(self._watchdog()) if self.lost_after_s else None
        try:
            for phase in self.phases:
                if self.stopping:
                    break
                await self._run_phase(phase)
        finally:
            for task in (ticker, watchdog):
                if task is not None:
                    task.cancel()
            await asyncio.gather(*(t for t in (ticker, watchdog) if t is not None), return_exceptions=True)
            await self._close_interval(final=True)
        return RunResult(self.phases, started_at, (time.perf_counter_ns() - started) / NS, self.stopping,
                         self.target.url, self.target.protocol, self.target.model, self.stop_reason)
