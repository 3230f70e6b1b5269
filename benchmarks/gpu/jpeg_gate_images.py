"""For benchmarks/jpeg_gate.py's GPU rows: the images whose JPEGs it judges, made on a GPU. In-process (the stage
loop Triton serves, benchmarks/gate_noise.py's Bench, CUDA graphs on as served): PROMPTS generated alone and together
in one batch, at each size, saved as the 8-bit pixels every encoding starts from (flux_async.measure.images.to_uint8),
one compressed .npz per size and kind (the device tool returns files of at most 16 MiB).
    python benchmarks/gpu/jpeg_gate_images.py --weights preset:flux1-schnell --out $OUT
Then, here: uv run python benchmarks/jpeg_gate.py --gpu-images DIR --gpu-label h200-schnell
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gate_noise import Bench  # noqa: E402

from flux_async.measure.images import to_uint8  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="preset:flux1-schnell")
    parser.add_argument("--sizes", default="512,1024")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--device", default="cuda", help="cpu (with --weights tiny) to try the script")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    cuda = args.device == "cuda"
    started = time.monotonic()
    bench = Bench(args.weights, args.device, torch.bfloat16 if cuda else torch.float32, 3.5)
    bench.graphs(cuda)
    items = list(range(args.prompts))
    out = Path(args.out)
    meta = {"weights": args.weights, "dtype": "bf16" if cuda else "fp32", "graphs": "on" if cuda else "off",
            "steps": args.steps, "prompts": args.prompts, "device": torch.cuda.get_device_name(0) if cuda else "cpu",
            "torch": torch.__version__, "command": " ".join(sys.argv),
            "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "sizes": []}
    for size in map(int, args.sizes.split(",")):
        bench.images([0], size, args.steps)  # warm-up (graph capture at this size)
        singles = [bench.images([i], size, args.steps)[0] for i in items]
        batched = bench.images(items, size, args.steps)
        for kind, images in (("singles", singles), ("batched", batched)):
            np.savez_compressed(out / f"jpeg-gate-{size}-{kind}.npz", images=np.stack([to_uint8(i) for i in images]))
        diff = max(float(np.abs(b - s).max()) for b, s in zip(batched, singles))
        meta["sizes"].append({"size": size, "max_abs_float": diff})
        print(f"{time.monotonic() - started:6.1f}s {size}²: batched vs single max abs {diff:.4f}", flush=True)
    (out / "jpeg-gate-images.json").write_text(json.dumps(meta, indent=1))


if __name__ == "__main__":
    main()
