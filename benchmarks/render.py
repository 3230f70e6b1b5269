"""Render BENCHMARKS.md from benchmarks/results/*.json (each benchmark script calls this after saving)."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

TARGETS = """Targets from the project's plan: client CPU per request at most half of Locust FastHttpUser's; at least
0.9x the requests/s that wrk drives into the same server; schedule error p99 <= 1 ms at 200 requests/s; RSS growth
<= 50 MB over one million requests."""


def _load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _source(data: dict, script: str) -> str:
    return f"_Measured {data['measured_at']} on {data['machine']} by `{script}`._\n"


def _ms(value) -> str:
    return "–" if value is None else f"{value:.2f}"


def client_cost(data: dict) -> list[str]:
    lines = ["## Client cost", "", _source(data, "uv run python benchmarks/client_cost.py"),
             f"Against a no-op Triton python model (`benchmarks/noop_repository`), {data['duration_s']:g} s per row; "
             f"{data['note']}.", "",
             "| tool | load | requests/s | client CPU µs/request | p50 ms | p90 ms | p99 ms | max ms | errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in data["rows"]:
        p = row["percentiles_ms"]
        lines.append(f"| {row['tool']} | {row['load']} | {row['requests_per_s']:.0f} | "
                     f"{row['cpu_us_per_request']:.0f} | {_ms(p.get('p50'))} | {_ms(p.get('p90'))} | "
                     f"{_ms(p.get('p99'))} | {_ms(p.get('max'))} | {row.get('errors', 0)} |")
    lines += ["", "flux_async's percentiles are its corrected latency (from the intended start); the others report "
              "from the actual send.", ""]
    verdict = data.get("verdict")
    if verdict:
        lines += [verdict, ""]
    memory_data = _load("memory")
    engine_cost = f"{memory_data['cpu_us_per_request']:.0f} µs" if memory_data else "about 10 µs"
    lines += [
        "Why the two client targets are missed: the engine itself costs " + engine_cost + " of CPU per request "
        "(scheduling, histograms, bookkeeping — measured against the fake target in the memory benchmark below); the "
        "rest is the Python protocol stacks, grpc.aio and aiohttp, which cost tritonclient's own asyncio clients as "
        "much or more (flux_async is ahead of both of them). Locust's FastHttpUser parses HTTP in C "
        "(geventhttpclient) and wrk is C throughout. Closing the gap needs a leaner HTTP/1.1 client (pre-encoded "
        "requests, which flux_async already keeps, written to keep-alive sockets and parsed with a C parser), or "
        "`run --workers N` to spread the client over more cores: on this 2-core machine the server shares them.",
        "",
        "Optimisations made from these numbers: uvloop; requests encoded once per distinct request and reused "
        "(pre-serialized gRPC messages on a grpc.aio channel of our own; KServe binary bodies for HTTP); responses "
        "decoded only as far as needed; histograms recorded in bulk with numpy off the request path (and percentiles "
        "read with numpy); no task or `wait_for` per request for pacing or timeouts; a pacing thread with the OS's "
        "sub-millisecond sleep. Before these changes the same script measured flux_async at 3,680 req/s over gRPC "
        "and 4,770 over HTTP at maximum on this machine (242 and 208 µs of CPU per request), and the engine's own "
        "cost against the fake target at 84 µs per request; the table shows the figures now.", ""]
    return lines


def schedule(data: dict) -> list[str]:
    lines = ["## Schedule accuracy", "", _source(data, "uv run python benchmarks/schedule_accuracy.py"),
             "Send time minus intended time (the `lag` histogram), flux_async over gRPC against the no-op model.", "",
             "| rate | sent | p50 ms | p99 ms | max ms | dropped |", "|---|---|---|---|---|---|"]
    for row in data["rows"]:
        lines.append(f"| {row['rate']:g}/s | {row['sent']} | {row['lag_ms']['p50']:.3f} | {row['lag_ms']['p99']:.3f} "
                     f"| {row['lag_ms']['max']:.3f} | {row['dropped']} |")
    return lines + [""] + ([data["verdict"], ""] if data.get("verdict") else [])


def omission(data: dict) -> list[str]:
    lines = ["## Coordinated omission", "", _source(data, "uv run python benchmarks/coordinated_omission.py"),
             data["setup"], "", "| tool | mode | requests | p50 ms | p99 ms | max ms | note |", "|---|---|---|---|---|---|---|"]
    for row in data["rows"]:
        p = row["percentiles_ms"]
        lines.append(f"| {row['tool']} | {row['mode']} | {row['requests']} | {_ms(p.get('p50'))} | "
                     f"{_ms(p.get('p99'))} | {_ms(p.get('max'))} | {row.get('note', '')} |")
    return lines + [""] + ([data["verdict"], ""] if data.get("verdict") else [])


def memory(data: dict) -> list[str]:
    return ["## Memory", "", _source(data, "uv run python benchmarks/memory.py"),
            f"{data['requests']:,} requests through the engine against the fake target "
            f"({data['setup']}): RSS {data['rss_mb_start']:.1f} MB at the start, {data['rss_mb_end']:.1f} MB at the "
            f"end — **{data['rss_mb_end'] - data['rss_mb_start']:+.1f} MB** (target: <= +50 MB); "
            f"{data['requests_per_s']:.0f} requests/s, {data['cpu_us_per_request']:.0f} µs CPU per request.", ""]


def overhead(data: dict) -> list[str]:
    lines = ["## Triton overhead (CPU, tiny weights)", "", _source(data, "uv run python benchmarks/sut_overhead.py"),
             "One request at a time: `bls` through Triton (gRPC, images returned) against `FluxPipeline` in-process "
             "on the same weights, prompt and seed; median of the runs.", "",
             "| size | steps | runs | Triton ms | in-process ms | ratio |", "|---|---|---|---|---|---|"]
    for row in data["rows"]:
        lines.append(f"| {row['size']}² | {row['steps']} | {row['runs']} | {row['triton_ms']:.1f} | "
                     f"{row['in_process_ms']:.1f} | {row['ratio']:.2f} |")
    return lines + [""] + ([data["note"], ""] if data.get("note") else [])


def fidelity(data: dict) -> list[str]:
    lines = ["## Fidelity (CPU, tiny weights)", "",
             f"_From `uv run python benchmarks/fidelity.py` ({data['machine']})._", "",
             "| size | 3 batched vs single (max abs) | single vs FluxPipeline | FluxPipeline s/image |",
             "|---|---|---|---|"]
    for size, row in data["sizes"].items():
        lines.append(f"| {size}² | {row['batch_vs_single_max_abs']:.2e} | {row['single_vs_pipeline_max_abs']:.2e} | "
                     f"{row['pipeline_seconds_per_image']:.2f} |")
    return lines + [""]


def _run(data: dict, prompts: int, concurrency: int) -> dict:
    return next(r for r in data["served"]["runs"]
                if r["prompts_per_request"] == prompts and r["concurrency"] == concurrency)


def flux_gpu(data: dict, eager: dict | None) -> list[str]:
    """The FLUX.1-schnell-sized pipeline on one GPU: served (CUDA graphs on) against in-process, eager run beside."""
    inp, served = data["in_process"], data["served"]
    one = _run(data, 1, 1)
    lines = ["## GPU: FLUX.1-schnell-sized pipeline through Triton against in-process FluxPipeline", "",
             _source(data, "bash benchmarks/gpu/run_flux_bench.sh OUT (after benchmarks/gpu/prepare.sh here)"),
             f"Random weights with FLUX.1-schnell's architecture (`preset:flux1-schnell`: CLIP-L, T5-XXL, 12B "
             f"transformer, VAE), bf16, {data['size']}², {data['steps']} steps, max_sequence_length 256. In-process: "
             "`FluxPipeline` built from the same modules in one process (median of 3 after a warm-up). Served: "
             "`triton_models/` on the bundled Triton, driven by flux_async over gRPC in closed loop; stage forwards "
             "through CUDA graphs (`FLUX_ASYNC_CUDA_GRAPHS=1`), the eager run beside it. Few requests per row "
             "(3 to 12): p99 is close to the maximum.", "",
             "| | batch 1 ms | batch 4 ms/image | CLIP ms | T5 ms | DiT ms/step | VAE ms | peak GiB (b1 / b4) |",
             "|---|---|---|---|---|---|---|---|",
             f"| in-process FluxPipeline | {inp['batch1_ms']:.0f} | {inp['batch4_ms_per_image']:.0f} | "
             f"{inp['clip_ms']:.1f} | {inp['t5_ms']:.1f} | {inp['dit_step_ms']:.1f} | {inp['vae_ms']:.1f} | "
             f"{inp['batch1_peak_memory_gib']:.1f} / {inp['batch4_peak_memory_gib']:.1f} |"]
    for label, run in (("served, CUDA graphs", data), ("served, eager", eager)):
        if run is None:
            continue
        row, four = _run(run, 1, 1), _run(run, 4, 1)
        stages = row["stages"]
        lines.append(f"| {label} (Triton compute, 1 prompt) | {row['latency_ms']['p50']:.0f} (p50) | "
                     f"{1000 / four['images_per_s']:.0f} | {stages['clip_encoder']['compute_infer_ms']:.1f} | "
                     f"{stages['t5_encoder']['compute_infer_ms']:.1f} | "
                     f"{stages['dit_transformer']['compute_infer_ms']:.1f} | "
                     f"{stages['vae_decoder']['compute_infer_ms']:.1f} | – |")
    lines += ["", "Served, by prompts per request and concurrency (closed loop; latency from the intended start):", "",
              "| prompts/request | concurrency | requests | p50 ms | p99 ms | images/s | DiT avg batch | DiT queue ms |"
              " eager images/s |", "|---|---|---|---|---|---|---|---|---|"]
    for row in served["runs"]:
        dit = row["stages"]["dit_transformer"]
        eager_rate = (f"{_run(eager, row['prompts_per_request'], row['concurrency'])['images_per_s']:.3f}"
                      if eager else "–")
        lines.append(f"| {row['prompts_per_request']} | {row['concurrency']} | {row['requests']} | "
                     f"{row['latency_ms']['p50']:.0f} | {row['latency_ms']['p99']:.0f} | {row['images_per_s']:.3f} | "
                     f"{dit['avg_batch_size']:.2f} | {dit['queue_ms']:.1f} | {eager_rate} |")
    parts = one["bls_parts_ms"]
    memory = served["memory"]
    lines += ["", "Where one served request's time goes (bls's own trace, `FLUX_ASYNC_TRACE=1`, median ms): "
              + ", ".join(f"{name} {value:.1f}" for name, value in parts.items())
              + f"; Triton's statistics put bls's compute at {one['stages']['bls']['compute_infer_ms']:.0f} ms, the "
              f"rest of the {one['latency_ms']['p50']:.0f} ms p50 is gRPC and the client.", "",
              "GPU memory, whole device (pynvml) while one request of N prompts runs, all models loaded: "
              + ", ".join(f"N={n}: {v:.1f} GiB" for n, v in memory["peak_gib"].items()) + "; per added image "
              + ", ".join(f"{k}: {v:.2f} GiB" for k, v in memory["gib_per_added_image"].items()) + ".", ""]
    ratio, gain = data["overhead_ratio_batch1"], data["images_per_s_gain_4_vs_1"]
    lines += [f"**Targets** (GPU issue): bls p50 at batch 1 <= 1.05x in-process — measured **{ratio:.2f}x** "
              f"({one['latency_ms']['p50']:.0f} vs {inp['batch1_ms']:.0f} ms): missed. Images/s at 4 prompts per "
              f"request >= 1.08x batch 1 — measured **{gain:.3f}x**"
              + (f" ({eager['images_per_s_gain_4_vs_1']:.3f}x eager, whose batch 1 is slower)" if eager else "")
              + ": missed; in-process the same ratio is "
              f"{inp['batch1_ms'] / inp['batch4_ms_per_image']:.3f}x.", ""]
    if data.get("analysis"):
        lines += [data["analysis"], ""]
    return lines


def main() -> None:
    lines = ["# Benchmarks", "", "Every figure below comes from a committed script; each script writes "
             "`benchmarks/results/<name>.json` and re-renders this file (`benchmarks/render.py`). Rerun them to "
             "measure your machine.", "", TARGETS, ""]
    for name, render in (("client_cost", client_cost), ("schedule_accuracy", schedule),
                         ("coordinated_omission", omission), ("memory", memory), ("sut_overhead", overhead),
                         ("fidelity-cpu", fidelity)):
        data = _load(name)
        lines += render(data) if data else [f"## {name}", "", "_Not measured yet._", ""]
    for path in sorted(RESULTS.glob("flux-gpu-*.json")):  # one per GPU; <name>-eager.json rides along
        if not path.stem.endswith("-eager"):
            lines += flux_gpu(_load(path.stem), _load(path.stem + "-eager"))
    lines += ["## GPU smoke check and GPU tests", "", "Tiny weights on an H100: `benchmarks/gpu/smoke.py` and "
              "`benchmarks/gpu/gpu_tests.sh` (results beside the scripts).", ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
