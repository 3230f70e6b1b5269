"""GPU smoke test of the served pipeline: triton_models/ on the GPU (bf16, stage tensors by DLPack), compared with
FluxPipeline run in-process on the same GPU, weights and seeds. Writes JSON to --out. Run by benchmarks/gpu/smoke.sh."""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import tritonclient.grpc as grpcclient
from diffusers import FluxPipeline

from flux_async.launch.triton_server import TritonServer
from flux_async.targets.bls_inputs import bls_inputs

PROMPTS = ["A cat holding a sign that says hello world", "A futuristic city with flying cars", "A red bicycle"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tritonserver", required=True)
    parser.add_argument("--weights", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    report: dict = {"gpu": torch.cuda.get_device_name(0)}
    pipe = FluxPipeline.from_pretrained(args.weights, torch_dtype=torch.bfloat16).to("cuda")
    pipe.set_progress_bar_config(disable=True)

    def reference(prompt, seed, size):
        return pipe(prompt=prompt, generator=torch.Generator("cpu").manual_seed(seed), num_inference_steps=4,
                    guidance_scale=0.0, height=size, width=size, max_sequence_length=256,
                    output_type="pt").images[0].float().cpu().numpy()

    with TritonServer(weights=args.weights, tritonserver=args.tritonserver) as server:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        config = client.get_model_config("dit_transformer", as_json=True)["config"]
        report["dit_input_types"] = {t["name"]: t["data_type"] for t in config["input"]}
        report["dit_instance_kind"] = config["instance_group"][0]["kind"]
        for size in (256, 1024):
            batch = client.infer("bls", bls_inputs(grpcclient, PROMPTS, seeds=[1, 2, 3], height=size, width=size))
            images = batch.as_numpy("images")
            for i, prompt in enumerate(PROMPTS):
                single = client.infer("bls", bls_inputs(grpcclient, [prompt], seeds=[i + 1], height=size,
                                                        width=size)).as_numpy("images")[0]
                ref = reference(prompt, i + 1, size)
                report[f"{size}_item{i}"] = {"psnr_single_vs_pipeline": psnr(single, ref),
                                             "psnr_batch_vs_single": psnr(images[i], single),
                                             "max_abs_single_vs_pipeline": float(np.abs(single - ref).max()),
                                             "range": [float(images[i].min()), float(images[i].max())]}
        timings = {"triton": [], "in_process": []}
        for _ in range(5):
            t = time.perf_counter()
            client.infer("bls", bls_inputs(grpcclient, [PROMPTS[0]], seeds=[1]))
            timings["triton"].append(time.perf_counter() - t)
            t = time.perf_counter()
            reference(PROMPTS[0], 1, 1024)
            torch.cuda.synchronize()
            timings["in_process"].append(time.perf_counter() - t)
        report["latency_1024_s"] = {k: sorted(v)[len(v) // 2] for k, v in timings.items()}
        report["server_log_tail"] = server.log_text()[-3000:]
    print(json.dumps(report, indent=1))
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
