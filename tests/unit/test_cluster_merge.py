"""The cluster's pure parts: clock offsets from round trips, interval logs added by interval index, and a lost
agent's last heartbeat added into the merged report."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from flux_async.cluster.clock import measure_offset
from flux_async.measure.recorder import Counters, Recorder, encode_histograms, new_histogram
from flux_async.report.hlog_merge import add_by_interval, parse_intervals, write_intervals
from flux_async.report.merge_reports import _recorder

ROOT = Path(__file__).resolve().parents[2]


def test_the_shortest_round_trip_bounds_the_offset():
    """An agent clock 5 ms ahead; round trips of 8, 1 and 4 ms, the reply read at a random point of each: the
    offset comes from the 1 ms trip, within ±0.5 ms of the truth."""
    now, trips, rng = [1_000_000_000], iter([8_000_000, 1_000_000, 4_000_000]), random.Random(1)

    def clock() -> int:
        return now[0]

    def agent() -> int:
        trip = next(trips)
        at = now[0] + int(trip * rng.random())
        now[0] += trip
        return at + 5_000_000

    offset = measure_offset(agent, rounds=3, now=clock)
    assert offset.uncertainty_ns == 500_000
    assert abs(offset.offset_ns - 5_000_000) <= offset.uncertainty_ns
    assert offset.agent_time(2_000_000_000) == 2_000_000_000 + offset.offset_ns


def _histogram(values):
    histogram = new_histogram()
    for value in values:
        histogram.record_value(value)
    return histogram


def test_intervals_add_by_index_exactly(tmp_path):
    rng = random.Random(2)
    logs, everything = [], []
    for _ in range(3):  # three agents
        log = []
        for index in range(4):
            values = [rng.randint(1_000, 500_000) for _ in range(200)]
            everything.extend(values)
            # each agent's interval starts a little off the grid (its own clock, its own start)
            log.append((index * 1.0 + rng.uniform(-0.02, 0.02), 1.0, "steady:latency", _histogram(values)))
        logs.append(log)
    merged = add_by_interval(logs, 1.0)
    assert [start for start, *_ in merged] == [0.0, 1.0, 2.0, 3.0]
    assert sum(h.get_total_count() for *_, h in merged) == len(everything) == 2400
    whole, one = new_histogram(), _histogram(everything)
    for *_, histogram in merged:
        whole.add(histogram)
    for percentile in (50, 90, 99, 99.9, 100):
        assert whole.get_value_at_percentile(percentile) == one.get_value_at_percentile(percentile)
    write_intervals(merged, tmp_path / "m.hlog", "test", 1_700_000_000.0)
    again = parse_intervals((tmp_path / "m.hlog").read_text())
    assert [(s, t, h.get_total_count()) for s, _, t, h in again] == [(s, t, h.get_total_count())
                                                                     for s, _, t, h in merged]


def test_a_lost_agents_last_heartbeat_is_added_in():
    agent = Recorder()
    for value in (10_000, 20_000, 30_000):
        agent.record("steady", "latency", "grpc", 1, value, "final")
    counters = Counters(sent=5, ok=3, errors=0)
    counters.errors_by_kind["agent lost"] += 2
    part = {"histograms": encode_histograms(agent), "counters": {"steady": counters.to_dict()},
            "class_counters": {"steady\tfinal": Counters(sent=5, ok=3).to_dict()}}
    merged = _recorder([], [part])
    assert merged.merged("latency", {"steady"}).get_total_count() == 3
    assert merged.counters["steady"].sent == 5 and merged.counters["steady"].errors_by_kind == {"agent lost": 2}
    assert merged.class_counters[("steady", "final")].ok == 3


@pytest.mark.parametrize("value, ok", [("continue", True), ("abort", True), ("later", False)])
def test_on_agent_loss_is_checked(value, ok):
    from flux_async.errors import ScenarioError
    from flux_async.scenario.config import parse_scenario

    data = {"workload": {"prompts": ["a"]}, "on_agent_loss": value,
            "phases": [{"executor": "constant-concurrency", "concurrency": 1, "requests": 1}]}
    if ok:
        assert parse_scenario(data).on_agent_loss == value
    else:
        with pytest.raises(ScenarioError, match="on_agent_loss: must be continue or abort"):
            parse_scenario(data)


def test_mismatch_images_travel_from_the_agents_host_into_one_gallery(tmp_path):
    """An agent reads the images its mismatch examples name (its host's files), the coordinator writes them into its
    gallery folder and points the examples there; a file gone on the agent stays named as it was."""
    from flux_async.cluster.agent import mismatch_files
    from flux_async.cluster.coordinator import land_mismatches

    agent_folder = tmp_path / "agent-host"
    agent_folder.mkdir()
    for name in ("m0-single.png", "m0-batched.png"):
        (agent_folder / name).write_bytes(b"\x89PNG" + name.encode())
    summary = {"mismatch_examples": [{"prompt": "a", "files": [str(agent_folder / "m0-single.png"),
                                                               str(agent_folder / "m0-batched.png"),
                                                               str(agent_folder / "gone.png")]}]}
    files = mismatch_files(summary)
    assert set(files) == {str(agent_folder / "m0-single.png"), str(agent_folder / "m0-batched.png")}
    gallery = tmp_path / "report-mismatches" / "agent-1"
    land_mismatches(summary, files, gallery)
    landed = summary["mismatch_examples"][0]["files"]
    assert landed[:2] == [str(gallery / "m0-single.png"), str(gallery / "m0-batched.png")]
    assert (gallery / "m0-batched.png").read_bytes() == b"\x89PNGm0-batched.png"
    assert landed[2] == str(agent_folder / "gone.png")


def test_the_live_display_adds_the_agents_heartbeats():
    """Two agents' cumulative heartbeats: the view's counts are their sums, its p99 that of every sample, and a lost
    agent's row says so."""
    import io

    from rich.console import Console

    from flux_async.cluster.clock import ClockOffset
    from flux_async.cluster.coordinator import Agent
    from flux_async.cluster.live import merged_so_far, render
    from flux_async.measure.recorder import encode_part

    agents = []
    for index, (sent, latency_us) in enumerate([(30, 100_000), (10, 900_000)]):
        recorder = Recorder()
        for _ in range(sent):
            recorder.count("steady", "sent")
            recorder.count("steady", "ok")
        recorder.record("steady", "latency", "grpc", 1, latency_us)
        agent = Agent(index, None, {"address": f"10.0.0.{index}", "node": "n", "host": "h"}, ClockOffset(0, 0))
        agent.last = {**encode_part(recorder), "phase": "steady", "in_flight": index + 2}
        agent.seen_s = 4.0
        agents.append(agent)
    agents[1].lost = {"reason": "ActorDiedError: its node died", "at_s": 4.0}
    assert merged_so_far([a.last for a in agents]).counters["steady"].sent == 40
    console = Console(file=io.StringIO(), width=200)
    console.print(render(agents, 5.0))
    text = console.file.getvalue()
    assert "sent 40  ok 40" in text and "p99 9" in text and "agents 1/2" in text
    assert "LOST: ActorDiedError" in text and "1.0s ago" in text


def test_agents_replay_the_coordinators_copy_of_a_trace(tmp_path):
    """A trace the scenario names is read once by the coordinator and written into each agent's folder; the agent's
    phases read that copy (its host need not have the file at the same path)."""
    import shutil

    from flux_async.cluster.agent import LoadAgent
    from flux_async.cluster.coordinator import phase_files
    from flux_async.scenario.config import parse_scenario

    trace = tmp_path / "shared" / "trace.jsonl"
    trace.parent.mkdir()
    shutil.copy(ROOT / "scenarios" / "traces" / "example.jsonl", trace)
    scenario = parse_scenario({"name": "replay", "target": {"url": "fake://"}, "verify": False,
                               "workload": {"prompts": ["a"]},
                               "phases": [{"name": "warm", "executor": "constant-concurrency", "concurrency": 2,
                                           "requests": 2},
                                          {"name": "replay", "executor": "trace", "file": str(trace)}]})
    files = phase_files(scenario)
    assert files == {str(trace): trace.read_bytes()}
    shutil.rmtree(trace.parent)  # not on the agent's host
    local = LoadAgent(1, 2)._with_copies(scenario, files)
    copy = local.phases[1].file
    assert copy != trace and copy.read_bytes() == files[str(trace)]
    assert local.phases[0] == scenario.phases[0]
    assert len(list(local.phases[1].split(1, 2).arrivals(None))) > 0  # its stripe, read from the copy
