"""`capacity SCENARIO --cluster ADDRESS --agents N`: the capacity search with every step's load from N agents.

1. Open the cluster as `run --cluster` does (cluster/coordinator.py): agents placed, clocks measured, references
   computed once here and shared; each agent opens its own session on the target with them.
2. Every step: its phase split over the agents still alive (the executors' split: arrivals interleaved, concurrency
   divided), one start instant converted to each agent's clock, heartbeats while it runs.
3. The agents' recorders are added exactly (histograms, counters), completion instants put on one clock (each
   from its own start), and the search judges the step as one (run/capacity.py, the same code as on one host).
   Clock offsets are measured again before every step (clocks drift over a long search).
4. A step during which an agent was lost is recorded as partial and run again on the survivors (its vote does not
   count); `on_agent_loss: abort` ends the search, and unless `continue` allows it the verdict fails.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

from flux_async.cluster.clock import REFUSE_UNCERTAINTY_MS, ClockOffset
from flux_async.cluster.coordinator import (
    Agent,
    _ray,
    _reason,
    agent_row,
    check_cluster_scenario,
    clock_of,
    cluster_section,
    cluster_session,
    heartbeat_figures,
    land_mismatches,
    watch,
)
from flux_async.errors import UsageError, WorkerSplitError
from flux_async.measure.client_usage import combine as combine_clients
from flux_async.measure.recorder import Recorder, add_part
from flux_async.report.merge_reports import combine_verification
from flux_async.run.capacity import CapacitySearch, CompletionClock, StepResult, capacity_report, describe_capacity
from flux_async.run.outputs import finish
from flux_async.run.session import RunOptions, mismatch_folder
from flux_async.scenario.config import CapacityConfig, Scenario
from flux_async.scenario.executors import Executor

STEP_LEAD_S = 0.5  # each step's start instant is this far ahead of the moment it is handed out


class ClusterSteps:
    """Each capacity step split over the agents still alive, started together, measured as one (run/capacity.py
    StepRunner). Keeps every agent's totals over the steps and the losses."""

    def __init__(self, agents: list[Agent], scenario: Scenario, options: RunOptions, console):
        self.agents, self.scenario, self.options, self.console = agents, scenario, options, console
        self.totals = {a.index: {"sent": 0, "ok": 0, "errors": 0, "dropped": 0} for a in agents}
        self.clients: dict[int, list[dict]] = {a.index: [] for a in agents}
        self.losses: list[dict] = []
        self._step = 0
        self._stopped = False

    async def run(self, phase: Executor) -> StepResult:
        self._step += 1
        alive = [a for a in self.agents if not a.lost]
        if not alive or self._stopped:
            return StepResult(Recorder(), CompletionClock(), 0.0, None, True, None, {"checked": 0, "mismatches": 0})
        for share in range(len(alive)):
            phase.split(share, len(alive))  # WorkerSplitError here, not from inside an agent (which reads as lost)
        await self._measure_clocks(alive)
        t0 = time.perf_counter_ns() + int(STEP_LEAD_S * 1e9)
        for share, agent in enumerate(alive):
            agent.result, agent.last, agent.hlog, agent.rows, agent.seen_s, agent.missed = None, {}, "", [], 0.0, 0
            agent.run_ref = agent.handle.step.remote(phase, agent.clock.agent_time(t0), (share, len(alive)))
        await watch(alive, self.scenario, self.options, self.console, t0)
        lost = [a for a in alive if a.lost]
        for agent in lost:
            loss = agent.lost or {}
            self.losses.append({"agent": agent.index, "node": agent.where["node"], "address": agent.where["address"],
                                "step": self._step, **loss, "in_flight_lost": agent.last.get("in_flight", 0)})
            self.console.print(f"[red]AGENT LOST[/red] agent {agent.index} on {agent.where['address']} during step "
                               f"{self._step} ({loss.get('reason')})", soft_wrap=True)
        return self._measured(phase, alive, lost)

    async def _measure_clocks(self, agents: list[Agent]) -> None:
        """Each agent's clock offset again (clocks drift over a long search); the last one is kept where a measurement
        fails (a lost agent shows in the step's heartbeats) or is too uncertain to start by."""
        clocks = await asyncio.gather(*(clock_of(a.handle) for a in agents), return_exceptions=True)
        for agent, clock in zip(agents, clocks):
            if isinstance(clock, ClockOffset) and clock.uncertainty_ns / 1e6 <= REFUSE_UNCERTAINTY_MS:
                agent.clock = clock

    def _measured(self, phase: Executor, alive: list[Agent], lost: list[Agent]) -> StepResult:
        """The step as one: the finished agents' recorders and the lost agents' last heartbeats added."""
        recorder, completions = Recorder(), CompletionClock()
        finished = [a for a in alive if a.result is not None]
        for agent in finished:
            result = agent.result
            assert result is not None
            add_part(recorder, result["part"])
            completions.done_ns += result["done_ns"]  # each from its own agent's start: one clock
            self._tally(agent, result["part"], phase)
            if result["client"]:
                self.clients[agent.index].append(result["client"])
        for agent in lost:
            if agent.last:
                add_part(recorder, agent.last)
                self._tally(agent, agent.last, phase)
        results = [a.result for a in finished if a.result is not None]
        verification = {key: sum(r["verification"][key] for r in results) for key in ("checked", "mismatches")}
        classes: dict[str, dict] = {}
        for result in results:
            for name, part in result["class_verification"].items():
                total = classes.setdefault(name, {"checked": 0, "mismatches": 0})
                for key in total:
                    total[key] += part[key]
        client = combine_clients([{**r["client"], "name": f"agent {a.index}"} for a in finished
                                  if (r := a.result) is not None and r["client"]])
        partial = None
        if lost:
            partial = "; ".join(f"agent {a.index} lost: {a.lost['reason']}" for a in lost if a.lost)
        interrupted = any(r["interrupted"] for r in results) or not finished or (
            bool(lost) and self.scenario.on_agent_loss == "abort")
        self._stopped = self._stopped or interrupted
        return StepResult(recorder, completions, max((r["duration_s"] for r in results), default=0.0),
                          results[0]["stages"] if results else None, interrupted, client, verification, classes,
                          partial)

    def _tally(self, agent: Agent, part: dict, phase: Executor) -> None:
        """Add the step's counts in `part` (recorder.encode_part's shape) to the agent's totals over the search."""
        counters = part["counters"].get(phase.name, {})
        for key in self.totals[agent.index]:
            self.totals[agent.index][key] += counters.get(key, 0)

    def stop(self) -> None:
        self._stopped = True


def _agent_row(agent: Agent, steps: ClusterSteps, count: int) -> dict:
    """The report's row for one agent, its counts and cost summed over the steps."""
    return agent_row(agent, count, steps.totals[agent.index], combine_clients(steps.clients[agent.index]) or {})


def check_splits(config: CapacityConfig, count: int) -> None:
    """A concurrency search cannot give each of `count` agents a share of a load under `count`: say so now."""
    if config.mode == "concurrency" and config.start < count:
        raise UsageError(f"capacity.start: a concurrency search over {count} agents starts at {count} or more "
                         f"(each agent runs at least one request at a time), got {config.start:g}")


async def capacity_cluster(scenario: Scenario, address: str, count: int, options: RunOptions, slo: list[str],
                           overrides: dict, console, place_timeout_s: float) -> tuple[dict, int]:
    """Search the capacity with the load from `count` agents of the cluster at `address`; (report, exit code)."""
    from flux_async.run.runner import capacity_settings

    expressions, config = capacity_settings(scenario, slo, overrides)
    check_splits(config, count)
    scenario = check_cluster_scenario(scenario, count, options, split_phases=False)
    started_at = datetime.now(timezone.utc)
    ray = _ray()
    async with cluster_session(scenario, address, count, options, console, place_timeout_s) as cluster:
        agents = cluster.agents
        await asyncio.to_thread(ray.get, [a.handle.open.remote(scenario, options, cluster.references)
                                          for a in agents])
        steps = ClusterSteps(agents, scenario, options, console)
        search = CapacitySearch(scenario, steps, config, expressions, console)
        cpu = time.process_time()
        try:
            section = await search.run()
        except WorkerSplitError as exc:  # a bisected concurrency under the agents still alive
            raise UsageError(f"--agents {count}: {exc}") from None
        cpu = time.process_time() - cpu
        closing = await asyncio.gather(*(asyncio.to_thread(ray.get, a.handle.close.remote(), timeout=60)
                                         for a in agents if not a.lost), return_exceptions=True)
        summaries = []
        gallery = mismatch_folder(scenario, options)
        for agent, closed in zip([a for a in agents if not a.lost], closing):
            if isinstance(closed, BaseException):
                console.print(f"[yellow]flux_async: agent {agent.index} did not close: {_reason(closed)}[/yellow]")
                continue
            if closed["verification"] is not None:
                land_mismatches(closed["verification"], closed["mismatch_files"], gallery / f"agent-{agent.index}")
                summaries.append(closed["verification"])
        verification = combine_verification(summaries) if summaries else None
        if verification is not None:
            verification["references"] = verification.get("references", 0) + cluster.computed
        losses = steps.losses
        report = capacity_report(scenario, cluster.session.target, section, started_at, verification, cluster={
            "agents": [_agent_row(a, steps, count) for a in agents], "agent_losses": losses,
            "cluster": {**cluster_section(address, agents, scenario), "references_shared": cluster.computed,
                        "coordinator_cpu_s": round(cpu, 3), **heartbeat_figures(agents)}})
    if losses and scenario.on_agent_loss != "continue":
        report["passed"] = False
    from flux_async.report.plots import plot_capacity

    return finish(report, options, plot_capacity, describe_capacity, console)
