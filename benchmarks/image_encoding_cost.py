"""Returning images: what each `image_encoding` of `bls` (fp32, uint8, png; docs/bls.md) costs end to end over gRPC
(tritonclient.grpc), for 1 and 4 images of 512² and 1024²: median request latency and the response's bytes.

    uv run python benchmarks/image_encoding_cost.py [--steps 1] [--repeats 5] [--prompts 1 4] [--sizes 512 1024]
    uv run python benchmarks/image_encoding_cost.py --url HOST:8001 --machine h100 --label 'H100, preset:flux1-schnell'

--url: a running server's gRPC endpoint (e.g. `serve --weights preset:flux1-schnell` on a GPU machine); without it
the script starts a Triton on the tiny weights. Writes benchmarks/results/image-encoding-cost-<machine>.json
and prints a markdown table.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import statistics
import sys
import time

from common import ROOT, save
from render import encoding_table

sys.path.insert(0, str(ROOT))

PROMPTS = ["a red fox in fresh snow", "a lighthouse at dusk", "a bowl of ramen, top view", "a city street in rain"]
SEED = 2000  # prompt i's seed is SEED + i
ENCODINGS = ("fp32", "uint8", "png")


@contextlib.contextmanager
def server_url(url: str | None):
    """`url` as given, or a Triton started on the tiny weights for the run."""
    if url:
        yield url
        return
    from flux_async.launch.triton_server import TritonServer
    from flux_async.pipeline.weights import resolve_weights

    with TritonServer(weights=str(resolve_weights().folder)) as server:
        yield server.grpc_url


def request(client, encoding: str, prompts: int, size: int, steps: int) -> tuple[float, int]:
    """One request, its image output read as numpy: (latency ms, serialized ModelInferResponse bytes)."""
    import tritonclient.grpc as grpcclient

    from flux_async.contract import IMAGE_OUTPUTS
    from flux_async.targets.bls_inputs import bls_inputs

    inputs = bls_inputs(grpcclient, PROMPTS[:prompts], seeds=[SEED + i for i in range(prompts)],
                        num_inference_steps=steps, height=size, width=size,
                        image_encoding=None if encoding == "fp32" else encoding)
    started = time.perf_counter()
    result = client.infer("bls", inputs)
    result.as_numpy(IMAGE_OUTPUTS[encoding])
    latency = (time.perf_counter() - started) * 1000
    return latency, result.get_response().ByteSize()


def measure(client, prompts: int, size: int, steps: int, repeats: int) -> list[dict]:
    """One row per encoding: a warm-up each, then `repeats` rounds taking turns (so drift hits all alike)."""
    samples: dict[str, list[float]] = {e: [] for e in ENCODINGS}
    sizes = {e: request(client, e, prompts, size, steps)[1] for e in ENCODINGS}
    for _ in range(repeats):
        for encoding in ENCODINGS:
            samples[encoding].append(request(client, encoding, prompts, size, steps)[0])
    fp32 = statistics.median(samples["fp32"])
    return [{"prompts": prompts, "size": size, "encoding": e, "latency_ms_p50": statistics.median(samples[e]),
             "latency_ms": samples[e], "vs_fp32_ms": statistics.median(samples[e]) - fp32,
             "response_bytes": sizes[e]} for e in ENCODINGS]


def main() -> None:
    import tritonclient.grpc as grpcclient

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="gRPC host:port of a running server (default: start one on the tiny weights)")
    parser.add_argument("--machine", default="cpu", help="names the result file (e.g. h100)")
    parser.add_argument("--prompts", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--label", default="", help="the server in a few words, for the write-up's heading "
                        "(e.g. 'H100, preset:flux1-schnell')")
    args = parser.parse_args()
    rows = []
    with server_url(args.url) as url:
        client = grpcclient.InferenceServerClient(url)
        for size in args.sizes:
            for prompts in args.prompts:
                rows += measure(client, prompts, size, args.steps, args.repeats)
                print(f"{prompts} x {size}²: " + ", ".join(f"{r['encoding']} {r['latency_ms_p50']:.1f} ms"
                                                            for r in rows[-len(ENCODINGS):]), flush=True)
        client.close()
    command = shlex.join(["uv", "run", "python", "benchmarks/image_encoding_cost.py", *sys.argv[1:]])
    server = args.label or ("" if args.url else "tiny weights, Triton started by the script")
    save(f"image-encoding-cost-{args.machine}", {"command": command, "server": server, "steps": args.steps,
                                                 "repeats": args.repeats, "rows": rows})
    print("\n".join(encoding_table(rows)))


if __name__ == "__main__":
    main()
