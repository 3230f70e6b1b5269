"""Coordinated omission: the no-op model stalls once for 1 s (4 s after its first request) during a 10 s run.
flux_async in open loop (latency from the intended start, and service time from the send), flux_async in closed
loop, Locust (16 users paced to the same rate) and wrk (16 connections) each meet the same stall on a fresh server.

    uv sync --group bench && apt-get install wrk
    uv run python benchmarks/coordinated_omission.py
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

import yaml
from client_cost import locust, wrk
from common import noop_server, run_measured, save

RATE, DURATION = 200, 10


def flux(phase: dict, url: str, folder: Path) -> dict:
    scenario = {"name": "omission", "target": {"url": url, "model": "noop"}, "verify": False,
                "workload": {"prompts": ["a cat"]}, "phases": [phase]}
    (folder / "s.yaml").write_text(yaml.safe_dump(scenario))
    run_measured([sys.executable, "-m", "flux_async", "run", str(folder / "s.yaml"), "--no-progress",
                  "--report", str(folder / "r.json")])
    return json.loads((folder / "r.json").read_text())


def main() -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        with noop_server(NOOP_STALL_AFTER_S=4) as server:
            report = flux({"executor": "constant-arrival-rate", "rate": RATE, "duration": DURATION,
                           "max_in_flight": 2000}, f"grpc://{server.grpc_url}", folder)
        for metric, mode in (("latency_ms", "open loop 200/s, corrected (from intended start)"),
                             ("service_time_ms", "open loop 200/s, uncorrected (from send)")):
            rows.append({"tool": "flux_async", "mode": mode, "requests": report["requests"]["ok"],
                         "percentiles_ms": report[metric]})
        with noop_server(NOOP_STALL_AFTER_S=4) as server:
            report = flux({"executor": "constant-concurrency", "concurrency": 16, "duration": DURATION},
                          f"grpc://{server.grpc_url}", folder)
        rows.append({"tool": "flux_async", "mode": "closed loop, 16 in flight", "requests": report["requests"]["ok"],
                     "percentiles_ms": report["latency_ms"], "note": "a closed loop coordinates with the server"})
        with noop_server(NOOP_STALL_AFTER_S=4) as server:
            result = locust(f"http://{server.http_url}", DURATION, RATE, folder)
        rows.append({"tool": "Locust FastHttpUser", "mode": "16 users paced to 200/s", "requests":
                     round(result["requests_per_s"] * DURATION), "percentiles_ms": result["percentiles_ms"],
                     "note": "users wait out the stall: requests not sent are not measured"})
        if shutil.which("wrk"):
            with noop_server(NOOP_STALL_AFTER_S=4) as server:
                result = wrk(f"http://{server.http_url}", DURATION, folder)
            rows.append({"tool": "wrk", "mode": "16 connections, as fast as it can", "requests":
                         round(result["requests_per_s"] * DURATION), "percentiles_ms": result["percentiles_ms"],
                         "note": "wrk 4 (Debian), no fixed rate"})
    for row in rows:
        print(f"{row['tool']:20s} {row['mode']:50s} p99 {row['percentiles_ms'].get('p99')}", flush=True)
    setup = (f"The no-op model (one instance) stalls once for 1 s, 4 s into a {DURATION} s run; each row is a fresh "
             f"server. flux_async's open loop sends at 200/s whatever the server does, so the requests due during "
             f"the stall are sent on time and wait — both its corrected and its service times show the stall; a "
             f"closed loop stops sending while it waits and measures only the requests it did send: in flux_async's "
             f"concurrency executor and in Locust the stall reaches the max but not the p99.")
    save("coordinated_omission", {"rows": rows, "setup": setup})


if __name__ == "__main__":
    main()
