"""Client cost: flux_async (gRPC, HTTP), wrk, Locust (FastHttpUser) and tritonclient's asyncio clients against the
same no-op Triton python model, at maximum (16 in flight) and at fixed rates. For each: requests/s achieved, client
CPU microseconds per request (of the load window), and the percentiles the tool itself reports.

    uv sync --group bench && apt-get install wrk      # Locust and wrk
    uv run python benchmarks/client_cost.py [--duration 10] [--rates 200 1000]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import yaml
from common import ROOT, noop_server, run_measured, save

CLIENTS = ROOT / "benchmarks" / "clients"


def flux_async(protocol: str, url: str, duration: float, rate: float | None, folder: Path) -> dict:
    phase = ({"executor": "constant-arrival-rate", "rate": rate, "duration": duration, "max_in_flight": 256} if rate
             else {"executor": "constant-concurrency", "concurrency": 16, "duration": duration})
    scenario = {"name": "client-cost", "target": {"url": url, "protocol": protocol, "model": "noop"},
                "verify": False, "workload": {"prompts": ["a cat"]}, "phases": [phase]}
    (folder / "s.yaml").write_text(yaml.safe_dump(scenario))
    run_measured([sys.executable, "-m", "flux_async", "run", str(folder / "s.yaml"), "--no-progress",
                  "--report", str(folder / "r.json")])
    report = json.loads((folder / "r.json").read_text())
    latency, service = report["latency_ms"], report["service_time_ms"]
    return {"requests_per_s": report["throughput"]["requests_per_s"],
            "cpu_us_per_request": report["client"]["cpu_us_per_request"],
            "percentiles_ms": {"p50": latency["p50"], "p90": latency["p90"], "p99": latency["p99"],
                               "max": latency["max"], "service_p99": service["p99"]},
            "errors": report["requests"]["errors"], "dropped": report["requests"]["dropped"],
            "event_loop": report["client"]["event_loop"]}


def tritonclient(protocol: str, url: str, duration: float, rate: float | None, folder: Path) -> dict:
    command = [sys.executable, str(CLIENTS / "tritonclient_load.py"), "--protocol", protocol, "--url", url,
               "--duration", str(duration)] + (["--rate", str(rate)] if rate else [])
    output, _ = run_measured(command)
    result = json.loads(output.split("RESULT ", 1)[1])
    return {"requests_per_s": result["requests"] / result["seconds"],
            "cpu_us_per_request": result["cpu_s"] / result["requests"] * 1e6,
            "percentiles_ms": result["percentiles_ms"]}


def locust(url: str, duration: float, rate: float | None, folder: Path) -> dict:
    env = dict(os.environ, LOCUST_RESULT=str(folder / "locust.json"), LOCUST_USERS="16",
               **({"LOCUST_RATE": str(rate)} if rate else {}))
    command = [sys.executable, "-m", "locust", "-f", str(CLIENTS / "locustfile.py"), "--headless", "-u", "16",
               "-r", "16", "-t", f"{int(duration)}s", "--host", url, "--only-summary", "--loglevel", "WARNING"]
    old = os.environ.copy()
    os.environ.update(env)
    try:
        run_measured(command)
    finally:
        os.environ.clear()
        os.environ.update(old)
    result = json.loads((folder / "locust.json").read_text())
    return {"requests_per_s": result["requests"] / result["seconds"],
            "cpu_us_per_request": result["cpu_s"] / max(result["requests"], 1) * 1e6,
            "percentiles_ms": result["percentiles_ms"], "errors": result["failures"]}


def wrk(url: str, duration: float, folder: Path) -> dict:
    command = ["wrk", "-t1", "-c16", f"-d{int(duration)}s", "--latency", "-s", str(CLIENTS / "post.lua"),
               f"{url}/v2/models/noop/infer"]
    output, cpu = run_measured(command)
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    units = {"us": 1e-3, "ms": 1.0, "s": 1000.0}
    percentiles = {f"p{m.group(1)}": float(m.group(2)) * units[m.group(3)]
                   for m in re.finditer(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)}
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "cpu_us_per_request": cpu / requests * 1e6, "percentiles_ms": percentiles,
            "errors": int(non_2xx.group(1)) if non_2xx else 0}


def verdict(rows: list[dict]) -> str:
    """The plan's two client targets, met or missed, from the rows at maximum load."""
    at_max = {r["tool"]: r for r in rows if r["load"].startswith("max")}
    best = min((r for name, r in at_max.items() if name.startswith("flux_async")),
               key=lambda r: r["cpu_us_per_request"])
    lines = []
    if "Locust FastHttpUser" in at_max:
        limit = at_max["Locust FastHttpUser"]["cpu_us_per_request"] / 2
        lines.append(f"Client CPU per request at most half of Locust FastHttpUser's ({limit:.0f} µs): "
                     f"{'met' if best['cpu_us_per_request'] <= limit else 'missed'} — flux_async's best is "
                     f"{best['cpu_us_per_request']:.0f} µs ({best['tool']}).")
    wrk_row = next((r for name, r in at_max.items() if name.startswith("wrk")), None)
    if wrk_row:
        fastest = max((r for name, r in at_max.items() if name.startswith("flux_async")),
                      key=lambda r: r["requests_per_s"])
        share = fastest["requests_per_s"] / wrk_row["requests_per_s"]
        lines.append(f"At least 0.9x wrk's requests/s: {'met' if share >= 0.9 else 'missed'} — "
                     f"{fastest['requests_per_s']:.0f} vs {wrk_row['requests_per_s']:.0f} req/s ({share:.2f}x, "
                     f"{fastest['tool']}).")
    return " ".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rates", type=float, nargs="*", default=[200.0, 1000.0])
    args = parser.parse_args()
    rows = []
    with noop_server() as server, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        grpc, http = f"grpc://{server.grpc_url}", f"http://{server.http_url}"
        tools = {
            "flux_async gRPC": lambda rate: flux_async("grpc", grpc, args.duration, rate, folder),
            "flux_async HTTP": lambda rate: flux_async("http", http, args.duration, rate, folder),
            "tritonclient grpc.aio": lambda rate: tritonclient("grpc", server.grpc_url, args.duration, rate, folder),
            "tritonclient http.aio": lambda rate: tritonclient("http", server.http_url, args.duration, rate, folder),
            "Locust FastHttpUser": lambda rate: locust(http, args.duration, rate, folder),
        }
        if shutil.which("wrk"):
            tools["wrk (HTTP, Lua POST)"] = lambda rate: None if rate else wrk(http, args.duration, folder)
        for load in [None, *args.rates]:
            for name, run in tools.items():
                result = run(load)
                if result is None:
                    continue  # wrk (not wrk2) cannot hold a fixed rate
                rows.append({"tool": name, "load": "max (16 in flight)" if load is None else f"{load:g}/s", **result})
                print(f"{name:24s} {rows[-1]['load']:20s} {result['requests_per_s']:8.0f} req/s "
                      f"{result['cpu_us_per_request']:7.0f} µs CPU/request", flush=True)
    save("client_cost", {"duration_s": args.duration, "rows": rows, "verdict": verdict(rows),
                         "note": "client and server share the machine's cores; CPU is the client's own, measured "
                                 "over the load window (wrk: its whole process)"})


if __name__ == "__main__":
    main()
