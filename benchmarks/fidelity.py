"""How close the served pipeline is to FluxPipeline: per size, 3 prompts batched in one `bls` request, the same
prompts alone, and FluxPipeline in this process, on the tiny weights (fp32, CPU). Prints and writes JSON.

    uv run python benchmarks/fidelity.py [--out benchmarks/results/fidelity-cpu.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import tritonclient.http as httpclient
from diffusers import FluxPipeline

from flux_async.launch.triton_server import TritonServer
from flux_async.pipeline.weights import resolve_weights
from flux_async.targets.bls_inputs import bls_inputs

PROMPTS = ["A cat holding a sign that says hello world", "A futuristic city with flying cars",
           "A cat playing with a ball"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default="benchmarks/results/fidelity-cpu.json")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024])
    args = parser.parse_args()
    weights = resolve_weights().folder
    pipe = FluxPipeline.from_pretrained(weights)
    pipe.set_progress_bar_config(disable=True)
    results = {"machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads, {platform.processor()}",
               "weights": str(weights), "sizes": {}}
    with TritonServer() as server:
        client = httpclient.InferenceServerClient(server.http_url, network_timeout=600)
        for size in args.sizes:
            seeds = list(range(1, len(PROMPTS) + 1))
            batch = client.infer("bls", bls_inputs(httpclient, PROMPTS, seeds=seeds, height=size, width=size))
            batched = batch.as_numpy("images")
            singles = [client.infer("bls", bls_inputs(httpclient, [p], seeds=[s], height=size, width=size))
                       .as_numpy("images")[0] for p, s in zip(PROMPTS, seeds)]
            started = time.perf_counter()
            refs = [pipe(prompt=p, generator=torch.Generator("cpu").manual_seed(s), num_inference_steps=4,
                         guidance_scale=0.0, height=size, width=size, max_sequence_length=256,
                         output_type="pt").images[0].numpy() for p, s in zip(PROMPTS, seeds)]
            pipeline_s = (time.perf_counter() - started) / len(PROMPTS)
            row = {"batch_vs_single_max_abs": max(float(np.abs(b - s).max()) for b, s in zip(batched, singles)),
                   "single_vs_pipeline_max_abs": max(float(np.abs(s - r).max()) for s, r in zip(singles, refs)),
                   "batch_vs_pipeline_max_abs": max(float(np.abs(b - r).max()) for b, r in zip(batched, refs)),
                   "pipeline_seconds_per_image": pipeline_s}
            results["sizes"][str(size)] = row
            print(size, json.dumps(row))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
