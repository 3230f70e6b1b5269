"""Load from tritonclient's own asyncio clients (grpc.aio or http.aio) against the payload model `bls`: N concurrent
loops of `infer` and `as_numpy("images")`; prints JSON with requests, errors, seconds, CPU seconds of the load window
and percentiles."""

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from flux_async.targets.bls_inputs import bls_inputs  # noqa: E402


def request(client_module, args) -> tuple[list, list]:
    """(inputs, outputs) of the one request every loop sends: the first `prompts` prompts, seeds seed + i."""
    prompts = [f"payload prompt {i}" for i in range(args.prompts)]
    inputs = bls_inputs(client_module, prompts, seeds=[args.seed + i for i in range(args.prompts)],
                        num_inference_steps=1, height=args.height, width=args.width)
    binary = {"binary_data": True} if args.protocol == "http" else {}
    return inputs, [client_module.InferRequestedOutput(name, **binary) for name in ("images", "seeds")]


async def main(args) -> dict:
    if args.protocol == "grpc":
        import tritonclient.grpc.aio as client_module
    else:
        import tritonclient.http.aio as client_module
    client = client_module.InferenceServerClient(args.url)
    inputs, outputs = request(client_module, args)
    headers = {"Accept-Encoding": "identity"} if args.identity else None
    latencies, errors = [], 0

    async def loop(end: float):
        nonlocal errors
        while time.perf_counter() < end:
            started = time.perf_counter()
            try:
                result = await client.infer("bls", inputs, outputs=outputs, headers=headers)
                result.as_numpy("images")
            except Exception:
                errors += 1
                continue
            latencies.append(time.perf_counter() - started)

    await loop(time.perf_counter() + args.warmup)
    latencies.clear()
    cpu, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(loop(started + args.duration) for _ in range(args.concurrency)))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    await client.close()
    ms = np.array(latencies or [np.nan]) * 1000
    return {"requests": len(latencies), "errors": errors, "seconds": seconds, "cpu_s": cpu,
            "percentiles_ms": {f"p{p}": float(np.percentile(ms, p)) for p in (50, 90, 99)} | {"max": float(ms.max())}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", choices=("grpc", "http"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--identity", action="store_true", help="HTTP: ask for Accept-Encoding: identity")
    parser.add_argument("--prompts", type=int, default=1)
    parser.add_argument("--seed", type=int, default=2000)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=0.5, help="seconds of one loop before the load window")
    print("RESULT " + json.dumps(asyncio.run(main(parser.parse_args()))))
