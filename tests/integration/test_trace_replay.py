"""`run scenarios/replay.yaml --request-log` against the session server for a few seconds, then the log replayed as a
trace: the shipped trace scenario end to end, and a run's request log reproducing its requests and classes."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flux_async", "run", *args, "--no-progress"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_the_replay_scenario_and_its_request_log_replayed(triton_server, tmp_path):
    url = f"grpc://{triton_server.grpc_url}"
    # 4 s of the trace: the first burst (4 previews, a two-prompt final) and a lone preview at 3.5 s
    result = run_cli("scenarios/replay.yaml", "--url", url, "--duration", "4", "--report", str(tmp_path / "r.json"),
                     "--request-log", str(tmp_path / "run.jsonl"))
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    replay = report["phases"][1]
    assert replay["trace"] == {"file": "traces/example.jsonl", "lines": 33, "skipped_lines": 0, "speed": 1.0}
    assert {name: c["requests"]["sent"] for name, c in report["classes"].items()} == {"preview": 5, "final": 1}
    assert report["verification"]["checked"] >= 7 and report["verification"]["mismatches"] == 0
    lines = [json.loads(line) for line in (tmp_path / "run.jsonl").read_text().splitlines()]
    assert len(lines) == 2 + 6 and all(line["outcome"] == "ok" for line in lines)

    scenario = yaml.safe_load((ROOT / "scenarios" / "replay.yaml").read_text())
    scenario["phases"] = [{"name": "again", "executor": "trace", "file": "run.jsonl", "speed": 4}]
    scenario["thresholds"] = ["error_rate < 1%"]
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(scenario))
    result = run_cli(str(tmp_path / "again.yaml"), "--url", url, "--no-verify", "--report", str(tmp_path / "a.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    again = json.loads((tmp_path / "a.json").read_text())
    assert again["requests"]["sent"] == len(lines)
    assert {name: c["requests"]["sent"] for name, c in again["classes"].items()} == Counter(
        line["class"] for line in lines)
