"""Payload: flux_async against curl (C) and tritonclient's asyncio clients on realistic responses — FP32 images of
256² or 1024², 1 or 4 per request (up to 48 MiB) — from a Triton python model that answers at once
(`benchmarks/payload_repository`), so what differs between rows is the client. For each row: requests/s, client CPU
µs per request, p50/p99, bytes per response and errors; closed loop at concurrency 1 and 4.

    uv sync --group bench
    uv run python benchmarks/payload.py [--duration 5] [--sizes 256 1024] [--prompts 1 4] [--concurrency 1 4]
                                        [--clients curl tc-grpc tc-http tc-http-identity fa-grpc ...]
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import shlex
import statistics
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml
from common import ROOT, run_measured, save

sys.path.insert(0, str(ROOT))
from flux_async.launch.triton_server import TritonServer  # noqa: E402

REPOSITORY = ROOT / "benchmarks" / "payload_repository"
CLIENTS_DIR = ROOT / "benchmarks" / "clients"
PROMPTS = ["a red fox in fresh snow", "a lighthouse at dusk", "a bowl of ramen, top view", "a city street in rain"]
SEED = 2000  # prompt i's seed is SEED + i, as flux_async's workload assigns them
CURL_FORMAT = "%{stderr}%{time_total} %{size_download} %{http_code}\n"  # stderr: unbuffered, kept when curl is stopped


def job(size: int, prompts: int):
    """The request curl and the probes send: the first `prompts` prompts at size², one step."""
    from flux_async.scenario.workload import Job

    return Job(0, tuple(PROMPTS[:prompts]), tuple(SEED + i for i in range(prompts)), 1, None, size, size, None)


# ---- what each response weighs on the wire --------------------------------------------------------------------------
def http_bytes(address: str, size: int, prompts: int, accept_encoding: str) -> tuple[str, int]:
    """(Content-Encoding, body bytes) of one HTTP response, read raw (not decompressed)."""
    from flux_async.targets.wire import http_request

    body, headers = http_request(job(size, prompts))
    connection = http.client.HTTPConnection(address)
    connection.request("POST", "/v2/models/bls/infer", body, {**headers, "Accept-Encoding": accept_encoding})
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.getheader("Content-Encoding", "identity"), len(payload)


def grpc_bytes(address: str, size: int, prompts: int) -> int:
    """The serialized size of one ModelInferResponse."""
    import tritonclient.grpc as grpcclient

    from flux_async.targets.bls_inputs import bls_inputs

    client = grpcclient.InferenceServerClient(address)
    inputs = bls_inputs(grpcclient, PROMPTS[:prompts], seeds=[SEED + i for i in range(prompts)],
                        num_inference_steps=1, height=size, width=size)
    size_bytes = client.infer("bls", inputs).get_response().ByteSize()
    client.close()
    return size_bytes


async def flux_async_encoding(scenario: Path) -> str:
    """The Content-Encoding flux_async's HTTP target gets: one request through its own session and headers."""
    from flux_async.scenario.config import load_scenario
    from flux_async.scenario.workload import JobSource
    from flux_async.targets.factory import make_target

    config = load_scenario(scenario)
    target = make_target(config.target)
    await target.open()
    try:
        body, headers = target.requests.get(JobSource(config.workload).next())
        async with target.session.post(f"{target.base}/v2/models/bls/infer", data=body, headers=headers) as response:
            await response.read()
            return response.headers.get("Content-Encoding", "identity")
    finally:
        await target.close()


def instances() -> int:
    """How many instances of the payload model Triton runs (its config's instance_group count)."""
    return int(re.search(r"count:\s*(\d+)", (REPOSITORY / "bls" / "config.pbtxt").read_text()).group(1))


def warm(server: TritonServer, sizes: list[int]) -> None:
    """Draw every image once in each model instance (8 requests of 4 prompts per size, 4 at a time)."""
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda size: http_bytes(server.http_url, size, 4, "identity"), [s for s in sizes
                                                                                          for _ in range(8)]))


# ---- the clients -----------------------------------------------------------------------------------------------------
def curl(server: TritonServer, size: int, prompts: int, concurrency: int, duration: float, folder: Path) -> dict:
    """`concurrency` curl processes, each POSTing the pre-encoded body over one kept-alive connection until stopped."""
    from flux_async.targets.wire import http_request

    body, headers = http_request(job(size, prompts))
    (folder / "body.bin").write_bytes(body)
    url = f"http://{server.http_url}/v2/models/bls/infer?[1-99999999]"  # a URL glob: one transfer per number
    one = shlex.join(["timeout", "-s", "TERM", str(duration), "curl", "-s", "--data-binary", f"@{folder}/body.bin",
                      *(part for k, v in headers.items() for part in ("-H", f"{k}: {v}")), "-w", CURL_FORMAT,
                      "-o", "/dev/null", url])
    outputs = [folder / f"curl-{i}.txt" for i in range(concurrency)]
    _, cpu = run_measured(["sh", "-c", " ".join(f"{one} 2>{shlex.quote(str(o))} &" for o in outputs) + " wait"])
    lines = [line.split() for o in outputs for line in o.read_text().splitlines()]
    done = [(float(t), int(n)) for t, n, code in (line for line in lines if len(line) == 3) if code == "200"]
    errors = sum(1 for line in lines if len(line) == 3 and line[2] != "200")
    ms = np.array([t for t, _ in done] or [np.nan]) * 1000
    return {"requests_per_s": len(done) / duration, "cpu_us_per_request": cpu / max(len(done), 1) * 1e6,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "bytes_per_response": int(statistics.median([n for _, n in done] or [0])), "encoding": "identity",
            "errors": errors}


# glibc's environment switches for what flux_async sets with mallopt (flux_async/targets/allocator.py): freed memory
# is kept for reuse instead of every large response taking fresh pages
HEAP_REUSE = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**30)}


def tritonclient(protocol: str, identity: bool, server: TritonServer, size: int, prompts: int, concurrency: int,
                 duration: float, env: dict | None = None) -> dict:
    """tritonclient's grpc.aio or http.aio client (benchmarks/clients/tritonclient_payload.py)."""
    url = server.grpc_url if protocol == "grpc" else server.http_url
    command = [sys.executable, str(CLIENTS_DIR / "tritonclient_payload.py"), "--protocol", protocol, "--url", url,
               "--prompts", str(prompts), "--seed", str(SEED), "--height", str(size), "--width", str(size),
               "--concurrency", str(concurrency), "--duration", str(duration)] + (["--identity"] if identity else [])
    output, _ = run_measured(command, env=env)
    result = json.loads(output.split("RESULT ", 1)[1])
    p = result["percentiles_ms"]
    return {"requests_per_s": result["requests"] / result["seconds"],
            "cpu_us_per_request": result["cpu_s"] / max(result["requests"], 1) * 1e6,
            "p50_ms": p["p50"], "p99_ms": p["p99"], "errors": result["errors"]}


def scenario(protocol: str, url: str, size: int, prompts: int, concurrency: int, duration: float,
             verify: bool) -> dict:
    """flux_async's scenario for one row: closed loop, 0.5 s warm-up, the four prompts drawn at random."""
    phase = {"executor": "constant-concurrency", "concurrency": concurrency}
    return {"name": "payload", "target": {"url": url, "protocol": protocol, "model": "bls"},
            "verify": {"sample_rate": 1.0} if verify else False,
            "workload": {"prompts": PROMPTS, "seed": SEED, "size": f"{size}x{size}", "prompts_per_request": prompts,
                         "steps": 1},
            "phases": [{"name": "warm-up", "warmup": True, "duration": 0.5, **phase},
                       {"name": "load", "duration": duration, **phase}]}


def flux_async(protocol: str, verify: bool, server: TritonServer, size: int, prompts: int, concurrency: int,
               duration: float, folder: Path) -> dict:
    """flux_async run on the row's scenario; figures from its JSON report."""
    url = f"grpc://{server.grpc_url}" if protocol == "grpc" else f"http://{server.http_url}"
    (folder / "s.yaml").write_text(yaml.safe_dump(scenario(protocol, url, size, prompts, concurrency, duration,
                                                           verify)))
    run_measured([sys.executable, "-m", "flux_async", "run", str(folder / "s.yaml"), "--no-progress",
                  "--report", str(folder / "r.json")])
    report = json.loads((folder / "r.json").read_text())
    latency, service, checks = report["latency_ms"], report["service_time_ms"], report["verification"]
    return {"requests_per_s": report["throughput"]["requests_per_s"],
            "cpu_us_per_request": report["client"]["cpu_us_per_request"],
            "p50_ms": latency["p50"], "p99_ms": latency["p99"],
            "service_p50_ms": service["p50"], "service_p99_ms": service["p99"],
            "errors": report["requests"]["errors"], "checked": checks["checked"], "mismatches": checks["mismatches"]}


# key → (name, protocol, the encoding of its responses: "identity", "gzip", "grpc" or "flux_async")
CLIENTS = {
    "curl": ("curl", "HTTP", "identity"),
    "tc-grpc": ("tritonclient grpc.aio", "gRPC", "grpc"),
    "tc-http": ("tritonclient http.aio (default: gzip)", "HTTP", "gzip"),
    "tc-http-identity": ("tritonclient http.aio (identity)", "HTTP", "identity"),
    "tc-grpc-reuse": ("tritonclient grpc.aio, heap reuse", "gRPC", "grpc"),
    "tc-http-reuse": ("tritonclient http.aio (identity), heap reuse", "HTTP", "identity"),
    "fa-grpc": ("flux_async", "gRPC", "grpc"),
    "fa-grpc-verify": ("flux_async, verification on", "gRPC", "grpc"),
    "fa-http": ("flux_async", "HTTP", "flux_async"),
    "fa-http-verify": ("flux_async, verification on", "HTTP", "flux_async"),
}


def run_client(key: str, server: TritonServer, size: int, prompts: int, concurrency: int, duration: float,
               folder: Path) -> dict:
    """One row's figures from the client named by `key`."""
    if key == "curl":
        return curl(server, size, prompts, concurrency, duration, folder)
    if key.startswith("tc-"):
        protocol = "grpc" if key.startswith("tc-grpc") else "http"
        return tritonclient(protocol, protocol == "http" and key != "tc-http", server, size, prompts, concurrency,
                            duration, HEAP_REUSE if key.endswith("-reuse") else None)
    return flux_async("grpc" if "grpc" in key else "http", key.endswith("-verify"), server, size, prompts,
                      concurrency, duration, folder)


def wire_sizes(server: TritonServer, size: int, prompts: int, fa_encoding: str) -> dict[str, tuple[str, int]]:
    """Encoding → (Content-Encoding, bytes per response) for this size and prompt count."""
    sizes = {"identity": http_bytes(server.http_url, size, prompts, "identity"),
             "gzip": http_bytes(server.http_url, size, prompts, "gzip, deflate"),  # what aiohttp asks for
             "grpc": ("none", grpc_bytes(server.grpc_url, size, prompts))}
    sizes["flux_async"] = sizes["gzip" if fa_encoding == "gzip" else "identity"]
    return sizes


# ---- the verdict -----------------------------------------------------------------------------------------------------
def _find(rows: list[dict], client: str, protocol: str, size: int, prompts: int, concurrency: int) -> dict | None:
    return next((r for r in rows if r["client"] == client and r["protocol"] == protocol and r["size"] == size
                 and r["prompts"] == prompts and r["concurrency"] == concurrency), None)


def _pairs(rows: list[dict], a: tuple[str, str], b: tuple[str, str], concurrency: int | None = None):
    """(label, row of a, row of b) for every size × prompts (× concurrency) where both were measured."""
    keys = sorted({(r["size"], r["prompts"], r["concurrency"]) for r in rows})
    for size, prompts, c in keys:
        if concurrency in (None, c):
            first, second = _find(rows, *a, size, prompts, c), _find(rows, *b, size, prompts, c)
            if first and second:
                yield f"{size}²×{prompts}" + ("" if concurrency else f" c{c}"), first, second


def _target(title: str, ratios: list[tuple[str, float]], ok) -> str:
    if not ratios:
        return f"{title}: not measured."
    met = all(ok(r) for _, r in ratios)
    return (f"{title}: **{'met' if met else 'missed'}** — "
            + ", ".join(f"{label} {ratio:.2f}x" for label, ratio in ratios) + ".")


def verdict(rows: list[dict]) -> list[str]:
    """The issue's three targets, met or missed, with the ratio behind each."""
    fa_http, fa_grpc = ("flux_async", "HTTP"), ("flux_async", "gRPC")
    latency = [(label, a["p50_ms"] / b["p50_ms"]) for label, a, b in _pairs(rows, fa_http, ("curl", "HTTP"), 1)]
    cpu = [(f"{protocol} {label}", a["cpu_us_per_request"] / b["cpu_us_per_request"])
           for protocol, reference in (("gRPC", ("tritonclient grpc.aio", "gRPC")),
                                       ("HTTP", ("tritonclient http.aio (identity)", "HTTP")))
           for label, a, b in _pairs(rows, ("flux_async", protocol), reference)]
    gzip = [(label, a["cpu_us_per_request"] / b["cpu_us_per_request"])
            for label, a, b in _pairs(rows, ("tritonclient http.aio (default: gzip)", "HTTP"),
                                      ("tritonclient http.aio (identity)", "HTTP"))]
    rate = [(label, a["requests_per_s"] / b["requests_per_s"]) for label, a, b in _pairs(rows, fa_http, fa_grpc, 4)]
    curl_rate = [(label, a["requests_per_s"] / b["requests_per_s"])
                 for label, a, b in _pairs(rows, ("curl", "HTTP"), fa_grpc, 4)]
    lines = [_target("(a) flux_async HTTP p50 at concurrency 1 within 1.2x of curl's", latency, lambda r: r <= 1.2),
             _target("(b) flux_async client CPU per request (verification off) at most 1.0x tritonclient's asyncio "
                     "client on the same protocol (HTTP: the identity row, same bytes)", cpu, lambda r: r <= 1.0),
             _target("(c) flux_async HTTP requests/s at concurrency 4 at least 0.8x flux_async gRPC's", rate,
                     lambda r: r >= 0.8)]
    if curl_rate:
        lines.append("For (c), what the server's HTTP endpoint allows: curl (C) reaches "
                     + ", ".join(f"{label} {ratio:.2f}x" for label, ratio in curl_rate)
                     + " of flux_async gRPC's requests/s at concurrency 4.")
    if gzip:
        lines.append("tritonclient http.aio's default (gzip) costs its client "
                     + ", ".join(f"{label} {ratio:.2f}x" for label, ratio in gzip) + " the CPU per request of the "
                     "identity row.")
    return lines


# ---- the run ---------------------------------------------------------------------------------------------------------
def median_of(rounds: list[dict]) -> dict:
    """One row from several rounds of the same client: each number the median of its rounds."""
    merged = dict(rounds[0])
    for key, value in rounds[0].items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            merged[key] = statistics.median(r[key] for r in rounds)
    return {**merged, "rounds": len(rounds)}


def measure(args, server: TritonServer, folder: Path) -> list[dict]:
    """Every row of the filtered matrix: each client `args.rounds` times, the clients of one size × prompts ×
    concurrency taking turns (so that a slow minute of the machine hits them alike), printed as measured."""
    probe = folder / "probe.yaml"
    probe.write_text(yaml.safe_dump(scenario("http", f"http://{server.http_url}", 256, 1, 1, 1, False)))
    fa_encoding = asyncio.run(flux_async_encoding(probe))
    rows = []
    for size in args.sizes:
        for prompts in args.prompts:
            wire = wire_sizes(server, size, prompts, fa_encoding)
            for concurrency in args.concurrency:
                rounds: dict[str, list[dict]] = {key: [] for key in args.clients}
                for _ in range(args.rounds):
                    for key in args.clients:
                        name, protocol, encoding = CLIENTS[key]
                        result = {"bytes_per_response": wire[encoding][1], "encoding": wire[encoding][0],
                                  **run_client(key, server, size, prompts, concurrency, args.duration, folder)}
                        rounds[key].append(result)
                        print(f"{name:38s} {protocol:4s} {size:4d}² x{prompts} c{concurrency} "
                              f"{result['requests_per_s']:8.1f} req/s {result['cpu_us_per_request']:8.0f} µs CPU/req "
                              f"p50 {result['p50_ms']:8.2f} ms p99 {result['p99_ms']:8.2f} ms "
                              f"{result['bytes_per_response']:>10,} B errors {result['errors']}", flush=True)
                for key in args.clients:
                    name, protocol, _ = CLIENTS[key]
                    rows.append({"client": name, "protocol": protocol, "size": size, "prompts": prompts,
                                 "concurrency": concurrency, **median_of(rounds[key])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per run of a client")
    parser.add_argument("--rounds", type=int, default=3, help="runs per client and row (the row: their medians)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--prompts", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--clients", nargs="+", choices=list(CLIENTS), default=list(CLIENTS))
    parser.add_argument("--save-as", default="payload", choices=("payload", "payload-unpinned"),
                        help="the results file (benchmarks/results/NAME.json)")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the server and the clients share every core (default: server on the first core, "
                             "each client on the others)")
    args = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    pinned = len(cores) >= 2 and not args.no_pin
    if pinned:
        os.sched_setaffinity(0, cores[:1])  # the server, started now, inherits the first core
    with TritonServer(model_repository=REPOSITORY) as server, tempfile.TemporaryDirectory() as tmp:
        if pinned:
            os.sched_setaffinity(0, cores[1:])  # every client started from here on gets the others
        warm(server, args.sizes)
        rows = measure(args, server, Path(tmp))
    lines = verdict(rows)
    print("\n".join(lines))
    save(args.save_as, {"duration_s": args.duration, "rounds": args.rounds, "instances": instances(), "rows": rows,
                         "verdict": lines, "pinned": pinned,
                         "note": ("the server on core " + str(cores[0]) + ", each client on core(s) "
                                  + ",".join(map(str, cores[1:])) if pinned else "client and server share the cores")
                         + "; client CPU is the client's own: curl's whole processes, tritonclient's over the load "
                           "window, flux_async's as its report gives it (over its phases, a 0.5 s warm-up included)"})


if __name__ == "__main__":
    main()
