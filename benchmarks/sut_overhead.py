"""Triton overhead on the CPU: one `bls` request at a time through Triton (gRPC, images returned) against
`FluxPipeline` run in this process on the same tiny weights, prompt and seed (median of the runs).

    uv run python benchmarks/sut_overhead.py [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from common import ROOT, save

sys.path.insert(0, str(ROOT))

PROMPT = "A cat holding a sign that says hello world"


def main() -> None:
    import torch
    import tritonclient.grpc as grpcclient
    from diffusers import FluxPipeline

    from flux_async.launch.triton_server import TritonServer
    from flux_async.pipeline.weights import resolve_weights
    from flux_async.targets.bls_inputs import bls_inputs

    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    args = parser.parse_args()
    weights = resolve_weights().folder
    pipe = FluxPipeline.from_pretrained(weights)
    pipe.set_progress_bar_config(disable=True)
    torch.set_num_threads(1)  # as each Triton model process runs
    rows = []
    with TritonServer(weights=str(weights)) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        for size in args.sizes:
            def served(size=size):
                client.infer("bls", bls_inputs(grpcclient, [PROMPT], seeds=[1], num_inference_steps=4,
                                               guidance_scale=0.0, height=size, width=size)).as_numpy("images")

            def in_process(size=size):
                pipe(prompt=PROMPT, generator=torch.Generator("cpu").manual_seed(1), num_inference_steps=4,
                     guidance_scale=0.0, height=size, width=size, max_sequence_length=256, output_type="pt")

            timings = {}
            for name, run in (("triton", served), ("in_process", in_process)):
                run()  # warm-up
                samples = []
                for _ in range(args.runs):
                    started = time.perf_counter()
                    run()
                    samples.append((time.perf_counter() - started) * 1000)
                timings[name] = statistics.median(samples)
            rows.append({"size": size, "steps": 4, "runs": args.runs, "triton_ms": timings["triton"],
                         "in_process_ms": timings["in_process"], "ratio": timings["triton"] / timings["in_process"]})
            print(rows[-1], flush=True)
    note = ("Both sides run torch with one thread per process (Triton: each model process; in-process: "
            "torch.set_num_threads(1)), on a 2-core machine where the client, the server and the in-process pipeline "
            "share the cores. The ratio includes gRPC transfer of the float32 images (12 MB at 1024²).")
    save("sut_overhead", {"rows": rows, "note": note})


if __name__ == "__main__":
    main()
