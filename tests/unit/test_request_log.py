"""`run --request-log`: one line per request (sent or dropped), in scheduling order, itself a trace — replayed with
`executor: trace`, it reproduces the run's request count and classes."""

from __future__ import annotations

import io
import json
from collections import Counter

from rich.console import Console

from flux_async.run.request_log import RequestLog, merge_logs
from flux_async.run.runner import RunOptions, run_scenario
from flux_async.scenario.config import parse_scenario
from flux_async.scenario.trace_file import check
from flux_async.scenario.workload import Job
from flux_async.targets.base import Outcome

WORKLOAD = {"prompts": ["a", "b", "c"], "seed": 5, "size": "64x64", "steps": 2,
            "classes": {"preview": {"weight": 3}, "final": {"weight": 1, "size": "128x128", "steps": 4}}}


async def run(data: dict, tmp_path, log_name: str) -> tuple[dict, list[dict]]:
    scenario = parse_scenario({"name": "t", "target": {"url": "fake://?latency=30ms"}, "verify": False,
                               "workload": WORKLOAD, **data}, str(tmp_path / "s.yaml"), tmp_path)
    log = tmp_path / log_name
    report, _ = await run_scenario(scenario, RunOptions(progress=False, verify=False, request_log=log),
                                   Console(file=io.StringIO()))
    return report, [json.loads(line) for line in log.read_text().splitlines()]


async def test_a_request_log_replayed_as_a_trace_reproduces_the_count_and_classes(tmp_path):
    """Bursts of 8 over a cap of 5 (some dropped) at 2 prompts-per-request settings, two classes: every request has
    a line, in order; replayed, the trace sends the same requests with the same classes and settings."""
    report, lines = await run({"phases": [
        {"name": "warm", "executor": "constant-concurrency", "concurrency": 2, "requests": 4, "warmup": True},
        {"name": "bursts", "executor": "burst", "burst_size": 8, "every": "300ms", "bursts": 3,
         "max_in_flight": 5}]}, tmp_path, "run.jsonl")
    bursts = report["phases"][1]
    assert len(lines) == 4 + 24 and bursts["requests"]["dropped"] > 0
    assert Counter(line["outcome"] for line in lines) == {"ok": 4 + bursts["requests"]["sent"],
                                                          "dropped": bursts["requests"]["dropped"]}
    timestamps = [line["timestamp"] for line in lines]
    assert timestamps == sorted(timestamps) and check(tmp_path / "run.jsonl").lines == 28
    first_burst = [line for line in lines if line["phase"] == "bursts"][0]
    assert {"prompts", "seeds", "size", "steps", "class", "send_ms", "end_ms", "latency_ms"} <= set(first_burst)
    final = next(line for line in lines if line["class"] == "final")
    assert (final["size"], final["steps"]) == ("128x128", 4)

    replayed, relog = await run({"phases": [{"name": "replay", "executor": "trace", "file": "run.jsonl"}]},
                                tmp_path, "replay.jsonl")
    assert replayed["phases"][0]["requests"]["sent"] == 28 and replayed["phases"][0]["trace"]["lines"] == 28
    assert Counter(line["class"] for line in relog) == Counter(line["class"] for line in lines)
    assert {k: s["requests"]["sent"] for k, s in replayed["classes"].items()} == Counter(
        line["class"] for line in lines)
    # the same schedule: each request intended at its logged time (from the first), to the log's 0.001 ms
    gaps = [abs((r["timestamp"] - relog[0]["timestamp"]) - (o["timestamp"] - lines[0]["timestamp"]))
            for r, o in zip(relog, lines)]
    assert max(gaps) < 0.01, gaps
    strip = ("timestamp", "phase", "outcome", "send_ms", "first_ms", "end_ms", "latency_ms", "service_ms", "images")
    assert [{k: v for k, v in line.items() if k not in strip} for line in relog] == \
           [{k: v for k, v in line.items() if k not in strip} for line in lines]


def job(index: int) -> Job:
    return Job(index, (f"p{index}",), (index,), None, None, None, None, None)


def test_lines_are_written_in_scheduling_order_and_flushed_at_close(tmp_path):
    log = RequestLog(tmp_path / "l.jsonl", flush_every=2)
    log.start(0)
    tickets = [log.reserve() for _ in range(4)]
    log.done(tickets[1], "p", job(1), 2_000_000, Outcome(2_000_000, 9_000_000, True, images=1))
    log.dropped(tickets[2], "p", job(2), 3_000_000)
    assert (tmp_path / "l.jsonl").read_text() == ""  # held back by request 0, still in flight
    log.done(tickets[0], "p", job(0), 1_000_000, Outcome(1_500_000, 30_000_000, False, error_kind="timeout",
                                                         error="no answer"))
    written = [json.loads(line) for line in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert [w["prompts"] for w in written] == [["p0"], ["p1"]]  # the first two flushed, the third buffered
    log.close()  # ticket 3 never ended (a stopped run): the rest is written anyway
    written = [json.loads(line) for line in (tmp_path / "l.jsonl").read_text().splitlines()]
    assert [(w["timestamp"], w["outcome"]) for w in written] == [(1.0, "timeout"), (2.0, "ok"), (3.0, "dropped")]
    assert written[0]["error"] == "no answer" and written[1]["latency_ms"] == 7.0 and written[1]["send_ms"] == 2.0


def test_workers_logs_merge_by_timestamp(tmp_path):
    for index, stamps in enumerate(([0, 5, 9], [1, 2, 30])):
        (tmp_path / f"w{index}.jsonl").write_text("".join(
            json.dumps({"timestamp": t, "prompt": f"w{index}"}) + "\n" for t in stamps))
    count = merge_logs([tmp_path / "w0.jsonl", tmp_path / "w1.jsonl", tmp_path / "missing.jsonl"],
                       tmp_path / "all.jsonl")
    merged = [json.loads(line)["timestamp"] for line in (tmp_path / "all.jsonl").read_text().splitlines()]
    assert count == 6 and merged == [0, 1, 2, 5, 9, 30]


def test_each_worker_writes_its_own_log(tmp_path):
    from flux_async.run.workers import worker_command

    command = worker_command(tmp_path / "s.yaml", 1, 2, "grpc://h:1", RunOptions(request_log=tmp_path / "r.jsonl"),
                             tmp_path / "w")
    assert command[command.index("--request-log") + 1] == str(tmp_path / "w" / "worker-1.jsonl")
    assert "--request-log" not in worker_command(tmp_path / "s.yaml", 1, 2, "grpc://h:1", RunOptions(), tmp_path)
