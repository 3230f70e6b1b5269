"""Load from tritonclient's own asyncio clients (grpc.aio or http.aio) against the no-op model: N concurrent loops
(maximum) or a paced rate; prints JSON with requests, seconds, CPU seconds of the load window and percentiles."""

import argparse
import asyncio
import json
import time

import numpy as np


async def main(args) -> dict:
    if args.protocol == "grpc":
        import tritonclient.grpc.aio as client_module
    else:
        import tritonclient.http.aio as client_module
    client = client_module.InferenceServerClient(args.url)
    prompt = client_module.InferInput("prompt", [1], "BYTES")
    prompt.set_data_from_numpy(np.array([b"a cat"], dtype=np.object_))
    latencies = []

    async def one():
        started = time.perf_counter()
        await client.infer("noop", [prompt])
        latencies.append(time.perf_counter() - started)

    cpu, started = time.process_time(), time.perf_counter()
    end = started + args.duration
    if args.rate:
        tasks, n = set(), 0
        while (due := started + n / args.rate) < end:
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
        await asyncio.gather(*tasks)
    else:
        async def loop():
            while time.perf_counter() < end:
                await one()
        await asyncio.gather(*(loop() for _ in range(args.concurrency)))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    await client.close()
    ms = np.array(latencies) * 1000
    return {"requests": len(latencies), "seconds": seconds, "cpu_s": cpu,
            "percentiles_ms": {f"p{p}": float(np.percentile(ms, p)) for p in (50, 90, 99)} | {"max": float(ms.max())}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--protocol", choices=("grpc", "http"), required=True)
    parser.add_argument("--url", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--duration", type=float, default=10.0)
    print("RESULT " + json.dumps(asyncio.run(main(parser.parse_args()))))
