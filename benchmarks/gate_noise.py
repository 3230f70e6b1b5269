"""What separates a correct server from a broken one: batched-vs-single differences of a correct pipeline (rounding)
and of simulated serving bugs, scored by the verification gate's own code (flux_async.measure.image_scores).

In-process, no Triton: the stage loop Triton serves (flux_async.pipeline.generate). For each size and step count,
every item is generated alone (its reference), then in batches of 2, 4, 8 (correct: rounding only), and as bugs:
another item's seed, one step fewer, another request's guidance (guidance-embedding weights only), and 2-25 % of a
neighbour's image blended in. Writes JSON after every case, so a run cut short keeps what it measured.
    uv run python benchmarks/gate_noise.py --weights tiny --sizes 256,512 --steps 4,28 \
        --out benchmarks/results/gate-noise-cpu.json
    (GPU) python benchmarks/gate_noise.py --weights preset:flux1-schnell --sizes 512,1024 --steps 4,28 \
        --graphs on,off ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine  # noqa: E402

from flux_async.measure.image_scores import score  # noqa: E402
from flux_async.pipeline.generate import GenerationRequest, Geometry, InProcessRunner, generate  # noqa: E402
from flux_async.pipeline.stages import ClipStage, DitStage, T5Stage, VaeStage  # noqa: E402
from flux_async.pipeline.weights import default_tiny_weights, resolve_weights  # noqa: E402

PROMPTS = ["A cat holding a sign that says hello world", "A beautiful landscape with mountains",
           "A futuristic city with flying cars", "A cat playing with a ball",
           "A red bicycle leaning against a brick wall", "A lighthouse on a rocky coast at dusk",
           "A bowl of ramen on a wooden table", "A snowy forest at night"]
BLENDS = (0.02, 0.05, 0.10, 0.25)
SEED = 1000


class Bench:
    def __init__(self, spec: str, device: str, dtype: torch.dtype, guidance: float):
        tiny = {"tiny": "schnell", "tiny-dev": "dev"}
        source = resolve_weights(str(default_tiny_weights(tiny[spec])) if spec in tiny else spec)
        self.device, self.dtype, self.guidance = torch.device(device), dtype, guidance
        self.stages = [cls(source, self.device, dtype) for cls in (ClipStage, T5Stage, DitStage, VaeStage)]
        self.runner, self.geometry = InProcessRunner(*self.stages), Geometry.from_source(source)

    def graphs(self, on: bool) -> None:
        for stage in self.stages:
            if hasattr(stage, "forward"):
                stage.forward.enabled = on

    def images(self, items: list[int], size: int, steps: int, seeds=None, guidance=None) -> list[np.ndarray]:
        seeds = seeds or [SEED + i for i in items]
        request = GenerationRequest(tuple(PROMPTS[i] for i in items), tuple(seeds), steps,
                                    self.guidance if guidance is None else guidance, size, size, 256)
        out = asyncio.run(generate(request, self.runner, self.geometry, self.device, self.dtype))
        return list(out.cpu().numpy())


def summarize(scores: list) -> dict:
    """Worst and percentiles of each score over a case's images (PSNR: None = identical, counted as +inf)."""
    out = {"images": len(scores), "identical": sum(s.psnr is None for s in scores)}
    for name, worst_is_low in (("psnr", True), ("tile_psnr", True), ("ssim", True), ("similarity", True),
                               ("max_abs", False), ("mean_abs", False)):
        values = np.array([np.inf if getattr(s, name) is None else getattr(s, name) for s in scores], dtype=float)
        if name in ("max_abs", "mean_abs"):
            values = np.nan_to_num(values, posinf=1.0)
        ordered = np.sort(values) if worst_is_low else -np.sort(-values)
        out[name] = {"worst": float(ordered[0]), "p5_worst": float(np.percentile(values, 5 if worst_is_low else 95)),
                     "median": float(np.median(values)), "best": float(ordered[-1])}
    return out


def run(args) -> dict:
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[args.dtype]
    bench = Bench(args.weights, args.device, dtype, args.guidance)
    guided = bench.geometry.guidance_embeds
    result = {"weights": args.weights, "device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu",
              "dtype": args.dtype, "torch": torch.__version__, "machine": machine(),
              "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "command": " ".join(sys.argv),
              "cases": []}
    started = time.monotonic()

    def save(case: dict) -> None:
        result["cases"].append(case)
        Path(args.out).write_text(json.dumps(result, indent=1))
        print(f"{time.monotonic() - started:7.1f}s {case['graphs']:>3} {case['size']}px {case['steps']} steps "
              f"{case['case']:<14} PSNR worst {case['psnr']['worst']:.1f} tile {case['tile_psnr']['worst']:.1f} "
              f"SSIM {case['ssim']['worst']:.5f} max {case['max_abs']['worst']:.4f}", flush=True)

    for graphs in args.graphs.split(","):
        bench.graphs(graphs == "on")
        for size in map(int, args.sizes.split(",")):
            for steps in map(int, args.steps.split(",")):
                if time.monotonic() - started > args.budget_s:
                    print("time budget spent: stopping", flush=True)
                    return result
                n = args.items_28 if steps > 8 else args.items
                items = list(range(n))
                common = {"graphs": graphs, "size": size, "steps": steps}
                t0 = time.monotonic()
                singles = [bench.images([i], size, steps)[0] for i in items]
                common["ms_per_single"] = round((time.monotonic() - t0) / n * 1000, 1)

                def case(name, received, against=None, singles=singles, common=common, **extra):
                    refs = against or singles
                    scores = [score(r, refs[i], ssim=True) for i, r in enumerate(received)]
                    save({**common, "case": name, **extra, **summarize(scores)})

                case("batch-1", [bench.images([i], size, steps)[0] for i in items])  # run to run
                for b in (2, 4, 8):
                    if b <= n:
                        case(f"batch-{b}", [img for k in range(0, n - n % b, b)
                                            for img in bench.images(items[k:k + b], size, steps)])
                rolled = [SEED + (i + 1) % n for i in items]
                case("other-seed", bench.images(items, size, steps, seeds=rolled))
                case("steps-1", bench.images(items, size, steps - 1))
                if guided:
                    case("other-guidance", bench.images(items, size, steps, guidance=args.guidance + 1.5))
                for blend in BLENDS:
                    case(f"blend-{round(blend * 100)}%",
                         [(1 - blend) * singles[i] + blend * singles[(i + 1) % n] for i in items])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="tiny", help="tiny, tiny-dev (tiny folders), a folder or preset:NAME")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default=None, choices=("bf16", "fp16", "fp32"))
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--steps", default="4,28")
    parser.add_argument("--graphs", default="off", help="on,off: with and without CUDA graphs (GPU only)")
    parser.add_argument("--items", type=int, default=8, help="prompts per case (batches up to this)")
    parser.add_argument("--items-28", type=int, default=8, help="prompts per case above 8 steps")
    parser.add_argument("--guidance", type=float, default=3.5)
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="start no case after this many seconds")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    args.dtype = args.dtype or ("bf16" if args.device == "cuda" else "fp32")
    torch.manual_seed(0)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    run(args)


if __name__ == "__main__":
    main()
