"""`run SCENARIO --cluster ADDRESS --agents N`: load generation across the hosts of a Ray cluster.

1. Connect to Ray and place N agents spread over its nodes (a placement group; exit 3 when it cannot in time).
2. Measure each agent's clock offset (cluster/clock.py) and pick one start instant T0, converted to each agent's
   own clock; refuse when an offset is too uncertain.
3. Compute the verification references once, here, and share them through the object store.
4. Run: agent i of N runs the `--workers` share i/N of every phase (the executors' split); polling each agent every
   second is the heartbeat and brings its interval log and cumulative counts.
5. An agent that dies is recorded (when, why, requests it had in flight) and the run goes on with the others
   (`on_agent_loss`: unset fails the verdict, `continue` allows it, `abort` stops the run).
6. Merge: histograms added exactly (report/merge_reports.py, the lost agents' last heartbeat included), interval
   logs added by interval index, one report, .hlog and HTML page, thresholds over the whole.
"""

from __future__ import annotations

import asyncio
import os
import signal
import tempfile
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from flux_async.cluster.agent import LoadAgent
from flux_async.cluster.clock import REFUSE_UNCERTAINTY_MS, WARN_UNCERTAINTY_MS, ClockOffset, measure_offset
from flux_async.errors import ClusterUnavailable, FluxAsyncError, MissingExtra, UsageError
from flux_async.report.hlog_merge import add_by_interval, parse_intervals, write_intervals
from flux_async.report.merge_reports import merge_reports
from flux_async.report.schema import Report
from flux_async.run.outputs import finish
from flux_async.run.session import RunOptions, Session, apply_overrides, mismatch_folder, session
from flux_async.run.workers import divide
from flux_async.scenario.config import Scenario

PLACE_TIMEOUT_S = 60.0  # how long the cluster may take to find room for the agents
POLL_S = 1.0
POLL_TIMEOUT_S = 10.0  # a heartbeat not answered in this long counts as missed
MISSED_HEARTBEATS = 3  # this many missed in a row (unreachable, not answering) and the agent is lost
START_LEAD_S = 2.0  # T0 is this far ahead of the moment the runs are handed out
INTERVAL_S = 1.0  # the engine's interval


@dataclass
class Agent:
    """What the coordinator knows of one agent."""

    index: int
    handle: Any
    where: dict
    clock: ClockOffset
    run_ref: Any = None
    last: dict = field(default_factory=dict)  # its last heartbeat with data
    seen_s: float = 0.0  # when it last answered, in s from T0
    heartbeat_ms: list[float] = field(default_factory=list)  # each poll's round trip
    missed: int = 0  # heartbeats missed in a row
    hlog: str = ""  # its interval log so far
    rows: list[dict] = field(default_factory=list)  # its timeline rows so far
    result: dict | None = None
    lost: dict | None = None

    @property
    def active(self) -> bool:
        return self.result is None and self.lost is None


def _ray():
    # Under `uv run`, Ray would start every agent with `uv run` in its own folder (a different project there): the
    # agents use the interpreter their node runs, which has flux_async installed.
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    try:
        import ray
    except ImportError:
        raise MissingExtra("--cluster needs Ray: pip install 'flux_async[cluster]'") from None
    return ray


def connect(address: str) -> None:
    """Join the cluster at `address` (`ray://HOST:10001` client, or a head's `HOST:PORT`)."""
    ray = _ray()
    try:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except Exception as exc:  # Ray raises ConnectionError, RuntimeError, ... with its reason
        raise ClusterUnavailable(f"--cluster {address}: cannot connect to Ray ({str(exc).splitlines()[0]})") from None


def place(count: int, timeout_s: float = PLACE_TIMEOUT_S):
    """A placement group of `count` one-CPU bundles spread over the nodes; ClusterUnavailable when not in time."""
    ray = _ray()
    from ray.util.placement_group import placement_group, remove_placement_group

    group = placement_group([{"CPU": 1}] * count, strategy="SPREAD")
    try:
        ray.get(group.ready(), timeout=timeout_s)
    except Exception:
        remove_placement_group(group)
        resources = ray.cluster_resources()
        raise ClusterUnavailable(
            f"--agents {count}: the cluster could not place {count} agents of 1 CPU in {timeout_s:g} s (it has "
            f"{resources.get('CPU', 0):g} CPUs on {len(ray.nodes())} nodes)") from None
    return group


def start_agents(count: int, group) -> list:
    ray = _ray()
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    remote = ray.remote(LoadAgent)
    return [remote.options(num_cpus=1, max_concurrency=8, scheduling_strategy=PlacementGroupSchedulingStrategy(
        placement_group=group, placement_group_bundle_index=i)).remote(i, count) for i in range(count)]


@dataclass
class ClusterSession:
    """An opened cluster: the coordinator's own session (target open, references computed), the placed agents with
    their clocks measured, and the references in the object store."""

    session: Session
    agents: list[Agent]
    references: Any  # a Ray object ref to {key: reference image}
    computed: int  # how many references the coordinator computed (once, for every agent)


def check_cluster_scenario(scenario: Scenario, count: int, options: RunOptions, split_phases: bool = True) -> Scenario:
    """The scenario with the command line's overrides, or UsageError/WorkerSplitError for what a cluster cannot run
    (`split_phases`: its phases must split over `count` agents; a capacity search runs its own)."""
    for index in range(count if split_phases else 0):
        divide(scenario, index, count)  # raises WorkerSplitError before anything starts
    scenario = apply_overrides(scenario, options)
    if not scenario.target.urls:
        raise UsageError("--cluster needs the target's URL (--url or target.url): agents on other hosts cannot "
                         "reach an embedded server")
    if scenario.faults:
        raise UsageError("--cluster runs no faults: they change the server once, not once per agent")
    return scenario


@asynccontextmanager
async def cluster_session(scenario: Scenario, address: str, count: int, options: RunOptions, console,
                          place_timeout_s: float = PLACE_TIMEOUT_S):
    """Steps 1-3: connect, place `count` agents and measure their clocks, open the target here and compute the
    references once, put them in the object store. Ray is shut down after."""
    ray = _ray()
    await asyncio.to_thread(connect, address)
    try:
        group = await asyncio.to_thread(place, count, place_timeout_s)
        agents = await _prepare_agents(count, group)
        async with session(scenario, options, console) as s:  # the target answers, references computed once
            computed = s.verifier.references if s.verifier is not None and s.verifier.enabled else {}
            console.print(f"flux_async: {count} agents on {len({a.where['node'] for a in agents})} nodes of "
                          f"{address}, clock offsets within "
                          f"±{max(a.clock.uncertainty_ns for a in agents) / 1e6:.2f} ms …")
            for agent in (a for a in agents if a.clock.uncertainty_ns / 1e6 > WARN_UNCERTAINTY_MS):
                console.print(f"[yellow]flux_async: agent {agent.index} on {agent.where['address']}: clock offset "
                              f"uncertain by ±{agent.clock.uncertainty_ns / 1e6:.1f} ms (over "
                              f"{WARN_UNCERTAINTY_MS:g} ms): it may start that much apart from the others "
                              "(latencies stay exact)[/yellow]")
            yield ClusterSession(s, agents, ray.put(computed), len(computed))
    finally:
        ray.shutdown()


async def run_cluster(scenario: Scenario, address: str, count: int, options: RunOptions, console,
                      place_timeout_s: float = PLACE_TIMEOUT_S) -> tuple[dict, int]:
    """Run `scenario` over `count` agents of the cluster at `address`; (merged report, exit code)."""
    scenario = check_cluster_scenario(scenario, count, options)
    ray = _ray()
    async with cluster_session(scenario, address, count, options, console, place_timeout_s) as cluster:
        agents = cluster.agents
        t0 = time.perf_counter_ns() + int(START_LEAD_S * 1e9)
        t0_epoch = time.time() + START_LEAD_S
        files = ray.put(phase_files(scenario))  # the traces the agents replay, read here once
        for agent in agents:
            agent.run_ref = agent.handle.run.remote(scenario, options, agent.clock.agent_time(t0), cluster.references,
                                                    files)
        cpu = time.process_time()
        await watch(agents, scenario, options, console, t0)
        cpu = time.process_time() - cpu
        gallery = mismatch_folder(scenario, options)
        for agent in agents:
            if agent.result is not None:
                land_mismatches(agent.result["report"]["verification"], agent.result["mismatch_files"],
                                gallery / f"agent-{agent.index}")
        report = _merge(scenario, agents, address, t0_epoch, options)
        # computed here once (the agents add only those a trace asks for that the workload does not have)
        report["verification"]["references"] = report["verification"].get("references", 0) + cluster.computed
        report["cluster"]["references_shared"] = cluster.computed
        report["cluster"].update(coordinator_cpu_s=round(cpu, 3), **heartbeat_figures(agents))
    from flux_async.report.json_report import print_summary
    from flux_async.report.plots import plot_run

    return finish(report, options, plot_run, print_summary, console)


def phase_files(scenario: Scenario) -> dict[str, bytes]:
    """The local files the scenario's phases read as they run (traces), by path: agents on other hosts get copies."""
    return {str(path): path.read_bytes() for phase in scenario.phases for path in phase.files()}


def heartbeat_figures(agents: list[Agent]) -> dict:
    """How many heartbeats the coordinator made and their round trips (the cost of coordination)."""
    beats = sorted(ms for a in agents for ms in a.heartbeat_ms)
    return {"heartbeats": len(beats), "heartbeat_ms": {
        "p50": round(beats[len(beats) // 2], 2), "p99": round(beats[int(len(beats) * 0.99)], 2),
        "max": round(beats[-1], 2)} if beats else None}


def land_mismatches(summary: dict, files: dict[str, bytes], folder: Path) -> None:
    """Write an agent's mismatch images (read on its host: cluster/agent.py `mismatch_files`) into `folder` here, and
    point its summary's examples at them: every agent's mismatches in one gallery."""
    landed = {}
    for name, data in files.items():
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / Path(name).name
        path.write_bytes(data)
        landed[name] = str(path)
    for example in summary.get("mismatch_examples") or []:
        example["files"] = [landed.get(name, name) for name in example.get("files") or []]


async def _prepare_agents(count: int, group) -> list[Agent]:
    """Start the agents, find where they run, measure their clocks; refuse offsets too uncertain to start together."""
    ray = _ray()
    handles = start_agents(count, group)
    wheres = await asyncio.to_thread(ray.get, [h.where.remote() for h in handles], timeout=PLACE_TIMEOUT_S)
    clocks = await asyncio.gather(*(clock_of(handle) for handle in handles))
    for index, (where, clock) in enumerate(zip(wheres, clocks)):
        check_clock(index, where, clock)
    return [Agent(index, handle, where, clock) for index, (handle, where, clock) in
            enumerate(zip(handles, wheres, clocks))]


async def clock_of(handle) -> ClockOffset:
    """The agent's clock offset from this process's, over round trips (cluster/clock.py)."""
    ray = _ray()

    def read_clock() -> int:
        return ray.get(handle.clock.remote())

    return await asyncio.to_thread(measure_offset, read_clock)


def check_clock(index: int, where: dict, clock: ClockOffset) -> None:
    """ClusterUnavailable when the offset is too uncertain for the agents to start together."""
    if clock.uncertainty_ns / 1e6 > REFUSE_UNCERTAINTY_MS:
        raise ClusterUnavailable(f"agent {index} on {where['address']}: its clock offset is uncertain by "
                                 f"±{clock.uncertainty_ns / 1e6:.1f} ms (over {REFUSE_UNCERTAINTY_MS:g} ms): the "
                                 "agents cannot start together")


async def watch(agents: list[Agent], scenario: Scenario, options: RunOptions, console, t0: int) -> None:
    """Poll every agent until each has finished or is lost; Ctrl-C stops them all (their reports still come)."""
    ray = _ray()
    loop, stopping = asyncio.get_running_loop(), asyncio.Event()

    def stop(reason: str = "stopped by a signal") -> None:
        if stopping.is_set():  # a second Ctrl-C: stop waiting, merge what the heartbeats brought
            for agent in agents:
                if agent.active:
                    agent.lost = {"at_s": agent.seen_s, "detected_s": _since(t0),
                                  "reason": "interrupted before it reported"}
            return
        stopping.set()
        for agent in agents:
            if agent.active:
                agent.handle.stop.remote(reason)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, "stopped by a signal")
    display = None
    if options.progress:
        from rich.live import Live

        from flux_async.cluster.live import render

        display = Live(render(agents, 0.0), console=console, refresh_per_second=2, transient=True)
        display.start()
    try:
        while any(a.active for a in agents):
            # up to POLL_S for every run to end (no wait once all have), then a heartbeat to those still running
            running = {a.run_ref: a for a in agents if a.active}
            done, _ = await asyncio.to_thread(ray.wait, list(running), num_returns=len(running), timeout=POLL_S)
            for agent in (running[ref] for ref in done):
                try:
                    agent.result = await asyncio.to_thread(ray.get, agent.run_ref)
                except Exception as exc:
                    agent.lost = {"at_s": agent.seen_s, "detected_s": _since(t0), "reason": _reason(exc)}
            await asyncio.gather(*(heartbeat(agent, t0) for agent in agents if agent.active))
            lost = [a for a in agents if a.lost]
            if lost and scenario.on_agent_loss == "abort" and not stopping.is_set():
                stop(f"agent {lost[0].index} lost (on_agent_loss: abort)")
            if display is not None:
                display.update(render(agents, _since(t0)))
    finally:
        if display is not None:
            display.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def heartbeat(agent: Agent, t0: int) -> None:
    ray = _ray()
    asked = time.perf_counter()
    try:
        data = await asyncio.to_thread(ray.get, agent.handle.poll.remote(), timeout=POLL_TIMEOUT_S)
    except ray.exceptions.RayTaskError as exc:  # alive, but its poll failed: a bug here, not a lost agent
        raise FluxAsyncError(f"agent {agent.index}: its heartbeat failed: {_reason(exc)}") from None
    except Exception as exc:  # the actor died, its node is gone, or it did not answer in time
        # Ray says ActorDiedError once the actor or its node is known dead; unavailable or silent may pass (a network
        # blip, a node under load): lost only after MISSED_HEARTBEATS in a row
        transient = isinstance(exc, (ray.exceptions.ActorUnavailableError, ray.exceptions.GetTimeoutError))
        agent.missed += 1
        if agent.active and (not transient or agent.missed >= MISSED_HEARTBEATS):  # lost since it last answered
            agent.lost = {"at_s": agent.seen_s, "detected_s": _since(t0), "reason": _reason(exc)}
        return
    agent.seen_s, agent.missed = _since(t0), 0
    agent.heartbeat_ms.append((time.perf_counter() - asked) * 1000)
    if data.get("started"):
        agent.hlog += data.pop("hlog")
        agent.rows += data.pop("rows", [])
        agent.last = data


def _since(t0: int) -> float:
    return round(max(0.0, (time.perf_counter_ns() - t0) / 1e9), 3)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]


def _merge(scenario: Scenario, agents: list[Agent], address: str, t0_epoch: float, options: RunOptions) -> dict:
    """One report from the agents' (and the lost agents' last heartbeats), one .hlog added by interval index."""
    folder = Path(tempfile.mkdtemp(prefix="flux_async_cluster_"))
    finished = [a for a in agents if a.result is not None]
    if not finished and not any(a.last for a in agents):
        raise FluxAsyncError("every agent was lost before it sent anything: "
                             + "; ".join(f"agent {a.index}: {a.lost['reason']}" for a in agents if a.lost))
    logs, hlogs = [], []
    for agent in agents:
        intervals = parse_intervals(agent.result["hlog"] if agent.result else agent.hlog)
        logs.append(intervals)
        path = folder / f"agent-{agent.index}.hlog"
        write_intervals(intervals, path, f"flux_async agent {agent.index} of {len(agents)}", t0_epoch)
        if agent.result is not None:
            hlogs.append(path)
    results = [a.result for a in finished if a.result is not None]
    reports = [Report.from_json({**r["report"], "timeline_epoch_s": t0_epoch}) for r in results] or \
        [_skeleton(scenario, agents, t0_epoch)]
    partial = [_lost_part(a, t0_epoch, folder / f"agent-{a.index}.hlog") for a in agents if a.lost and a.last]
    report = merge_reports(scenario, reports, hlogs, embedded=False, partial=partial)
    if options.hlog:
        write_intervals(add_by_interval(logs, INTERVAL_S), options.hlog,
                        f"flux_async interval log of {len(agents)} cluster agents, added by interval: tags are "
                        "<phase>:<metric>, values in microseconds", t0_epoch)
    if options.request_log:
        from flux_async.run.request_log import merge_logs as merge_request_logs

        parts = []
        for index, result in enumerate(results):
            part = folder / f"agent-{index}.jsonl"
            part.write_text(result.get("request_log") or "")
            parts.append(part)
        merge_request_logs(parts, options.request_log)
    losses = [{"agent": a.index, "node": a.where["node"], "address": a.where["address"], **a.lost,
               "in_flight_lost": a.last.get("in_flight", 0)} for a in agents if a.lost]
    report["agents"] = [_agent_row(a, len(agents)) for a in agents]
    report["agent_losses"] = losses
    report["cluster"] = cluster_section(address, agents, scenario)
    if losses:
        first = min(loss["at_s"] for loss in losses)
        for row in report.get("timeline", []):
            if row["t"] + row.get("dt", 0) > first:
                alive = sum(1 for loss in losses if loss["at_s"] > row["t"])
                row["partial"] = True
                row["agents"] = len(agents) - len(losses) + alive
                row["offered_share"] = round(row["agents"] / len(agents), 3)
        if scenario.on_agent_loss != "continue":
            report["passed"] = False
            report["interrupted"] = report["interrupted"] or scenario.on_agent_loss == "abort"
            report["stop_reason"] = report.get("stop_reason") or (
                f"{len(losses)} of {len(agents)} agents lost (on_agent_loss: "
                f"{scenario.on_agent_loss or 'unset, so the verdict fails'})")
    return report


def _skeleton(scenario: Scenario, agents: list[Agent], t0_epoch: float) -> Report:
    """When every agent was lost: a report of the phases their last heartbeats had reached, counting nothing itself
    (their counts and histograms come in as partial parts), interrupted."""
    phases: dict[str, dict] = {}
    for agent in agents:
        for phase in agent.last.get("phases", []):
            known = phases.setdefault(phase["name"], {**phase, "finished": False})
            known["duration_s"] = max(known["duration_s"], phase["duration_s"])
    started = datetime.fromtimestamp(t0_epoch, timezone.utc).isoformat(timespec="seconds")
    return Report.from_json({"scenario": scenario.name, "started_at": started, "interrupted": True,
                             "target": {"url": ",".join(scenario.target.urls), "protocol": scenario.target.protocol,
                                        "model": scenario.target.model_name},
                             "phases": list(phases.values()), "timeline_epoch_s": t0_epoch})


def _lost_part(agent: Agent, t0_epoch: float, hlog: Path) -> dict:
    """A lost agent's last heartbeat, with the requests it had in flight counted as errors of kind 'agent lost', and
    its timeline rows and interval log until then (report/merge_reports.py `partial`)."""
    part = {key: agent.last[key] for key in ("histograms", "counters", "class_counters")}
    part.update(timeline=agent.rows, timeline_epoch_s=t0_epoch, hlog=hlog)
    phase, in_flight = agent.last.get("phase"), agent.last.get("in_flight", 0)
    if phase and in_flight:
        counters = part["counters"].setdefault(phase, {"sent": 0, "ok": 0, "errors": 0, "dropped": 0,
                                                       "images_ok": 0, "good": 0, "errors_by_kind": {},
                                                       "error_examples": {}})
        counters["errors"] += in_flight
        counters["errors_by_kind"]["agent lost"] = counters["errors_by_kind"].get("agent lost", 0) + in_flight
        counters["error_examples"].setdefault("agent lost", agent.lost["reason"] if agent.lost else "")
    return part


def _agent_row(agent: Agent, count: int) -> dict:
    """The report's row for one agent after a run: its report's counts (warm-up included), or its last heartbeat's."""
    if agent.result is not None:
        report = agent.result["report"]
        requests, client = report["requests"], report.get("client") or {}
        requests = {k: sum(p["requests"][k] for p in report["phases"]) for k in requests}  # warm-up included
    else:
        counters = agent.last.get("counters", {}).values()
        requests = {k: sum(c[k] for c in counters) for k in ("sent", "ok", "errors", "dropped")}
        client = {}
    return agent_row(agent, count, requests, client)


def agent_row(agent: Agent, count: int, requests: dict, client: dict) -> dict:
    """The report's row for one agent: where it ran, its share, its counts, its cost, its clock and its fate."""
    return {"agent": agent.index, "node": agent.where["node"], "address": agent.where["address"],
            "host": agent.where["host"], "share": f"{agent.index}/{count}", "requests": requests,
            "client_cpu_s": client.get("cpu_s"), "cpu_us_per_request": client.get("cpu_us_per_request"),
            **agent.clock.as_dict(), "lost": agent.lost}


def cluster_section(address: str, agents: list[Agent], scenario: Scenario) -> dict:
    """The report's `cluster`: where the agents ran, what a loss does, how closely their clocks agree."""
    return {"address": address, "agents": len(agents), "nodes": len({a.where["node"] for a in agents}),
            "on_agent_loss": scenario.on_agent_loss,
            "clock_uncertainty_max_ms": round(max(a.clock.uncertainty_ns for a in agents) / 1e6, 3),
            "clock_warn_ms": WARN_UNCERTAINTY_MS, "clock_refuse_ms": REFUSE_UNCERTAINTY_MS}

