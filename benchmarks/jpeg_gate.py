"""Lossy JPEG under the verification gate: a deployment that returns JPEG makes both the received image and the
reference the verifier gets from the same server (the prompt and seed alone) lossy. Does the default gate still pass
correct batching, and still fail a wrong image?

In-process, no Triton: the stage loop Triton serves (flux_async.pipeline.generate, as benchmarks/gate_noise.py) on
the tiny weights in fp32 on the CPU. For each size, PROMPTS are generated alone (the references) and together in one
batch (the received images); each image goes through PIL's JPEG encoder at each quality (and PNG), is decoded with
flux_async.measure.images.decode_image and judged by flux_async.verification.verifier.compare under GATES["auto"].
Received cases, each encoded the same way as its reference:
  - batched: the batch's image of prompt i against prompt i alone (CPU fp32 rounding only),
  - batched + bf16 noise: the same with the worst batched-vs-single noise measured on an H200 in bf16 added before
    encoding (tests/fixtures/noisy_models/bls_bf16_noise: 48 dB over the image, one 32x32 tile at 45.5 dB),
  - blend 10 %: 10 % of the neighbour's image blended in (the bls_blend bug), which must fail,
  - other prompt: prompt i+1's image alone against prompt i's reference, which must fail.
Plus, for the record, the batched JPEG against a lossless (float) reference: what a verifier that made its
reference some other way would see. The tiny weights' images are close to noise, JPEG's worst case; as a control the
same cases run on four photographs bundled with scikit-image (PHOTOS, resized to each size) standing in for
references, with "fp32-rounding" (noise at FP32_PSNR_DB) in place of a CPU batch. Encodings: PNG, JPEG at each
quality with PIL's default 4:2:0 chroma subsampling, and JPEG at 95 with 4:4:4.
With --gpu-images, the same judged on images made on a GPU by benchmarks/gpu/jpeg_gate_images.py (their 8-bit
pixels: the float images' "vs lossless ref" is then against the 8-bit single, a PNG deployment's reference).
    uv run python benchmarks/jpeg_gate.py [--sizes 256,512] [--qualities 75,90,95] [--steps 4] [--gpu-images DIR]
Writes benchmarks/results/jpeg-gate-cpu.json and re-renders BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import save  # noqa: E402
from gate_noise import Bench  # noqa: E402

from flux_async.measure.gates import GATES  # noqa: E402
from flux_async.measure.images import decode_image, encode_png, to_uint8  # noqa: E402
from flux_async.verification.verifier import compare  # noqa: E402

NOISE_PSNR_DB, TILE_PSNR_DB = 48.0, 45.5  # as tests/fixtures/noisy_models/bls_bf16_noise
BLEND = 0.10
FP32_PSNR_DB = 100.0  # about the CPU's fp32 batched-vs-single difference at 512² (this script's tiny rows)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")  # bundled with scikit-image: no download
CASES = ("batched", "fp32-rounding", "batched+bf16-noise", "blend-10%", "other-prompt")
MUST_PASS = {"batched": True, "fp32-rounding": True, "batched+bf16-noise": True, "blend-10%": False,
             "other-prompt": False}


def encode(image: np.ndarray, encoding: str) -> bytes:
    """A [3, H, W] float image as PNG or JPEG bytes: "jpeg-q90" is quality 90 with PIL's default 4:2:0 chroma
    subsampling, "jpeg-q95-444" quality 95 without subsampling."""
    if encoding == "png":
        return encode_png(image)
    from PIL import Image

    quality, _, chroma = encoding.removeprefix("jpeg-q").partition("-")
    options = {"subsampling": 0} if chroma == "444" else {}
    buffer = io.BytesIO()
    Image.fromarray(to_uint8(image)).save(buffer, format="JPEG", quality=int(quality), **options)
    return buffer.getvalue()


def bf16_noise(image: np.ndarray, seed: int) -> np.ndarray:
    """The noisy fixture's perturbation: Gaussian noise at NOISE_PSNR_DB, its first 32x32 tile at TILE_PSNR_DB."""
    noise = np.random.default_rng(seed).standard_normal(image.shape).astype(np.float32) * 10 ** (-NOISE_PSNR_DB / 20)
    noise[..., :32, :32] *= 10 ** ((NOISE_PSNR_DB - TILE_PSNR_DB) / 20)
    return np.clip(image + noise, 0, 1)


def judge(received: list[np.ndarray], references: list[np.ndarray]) -> dict:
    """The auto gate's verdict on each pair, with the worst scores (None: identical)."""
    comparisons = [compare(r, ref, GATES["auto"]) for r, ref in zip(received, references)]

    def worst(name):
        values = [getattr(c.scores, name) for c in comparisons]
        finite = [v for v in values if v is not None]
        return min(finite) if finite else None

    return {"images": len(comparisons), "passed": sum(c.ok for c in comparisons),
            "psnr_worst": worst("psnr"), "tile_psnr_worst": worst("tile_psnr"),
            "psnr": [c.scores.psnr for c in comparisons], "tile_psnr": [c.scores.tile_psnr for c in comparisons],
            "max_abs_worst": max(c.scores.max_abs for c in comparisons),
            "reasons": [r for c in comparisons for r in c.reasons][:4]}


def photos(size: int) -> list[np.ndarray]:
    """PHOTOS from scikit-image's bundled data, centre-cropped square and resized to size² (Lanczos), [3, H, W]."""
    import skimage.data
    from PIL import Image

    out = []
    for name in PHOTOS:
        picture = getattr(skimage.data, name)()
        h, w = picture.shape[:2]
        side = min(h, w)
        crop = picture[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        resized = np.asarray(Image.fromarray(crop).resize((size, size), Image.LANCZOS), dtype=np.float32)
        out.append(np.ascontiguousarray(resized.transpose(2, 0, 1) / 255.0))
    return out


def evaluate(source: str, size: int, references: list[np.ndarray], received: dict[str, list[np.ndarray]],
             encodings: list[str], steps: int | None) -> list[dict]:
    """One row per encoding: every received case and its references encoded alike, decoded, judged."""
    rows = []
    for encoding in encodings:
        blobs = [encode(image, encoding) for image in references]
        decoded_references = [decode_image(b) for b in blobs]
        row = {"source": source, "size": size, "encoding": encoding, "steps": steps,
               "bytes_per_image": round(float(np.mean([len(b) for b in blobs]))),
               "reference_vs_float": judge(decoded_references, references)}  # the encoding's own loss
        for case, images in received.items():
            row[case] = judge([decode_image(encode(image, encoding)) for image in images], decoded_references)
        first = next(iter(received))  # the correct case: its encoding against the lossless reference
        row[f"{first}_vs_float_reference"] = judge([decode_image(encode(image, encoding))
                                                    for image in received[first]], references)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256,512")
    parser.add_argument("--qualities", default="75,90,95")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--gpu-images", help="a folder from benchmarks/gpu/jpeg_gate_images.py: judge its images too")
    parser.add_argument("--gpu-label", default="h200-schnell", help="the source column of those rows")
    args = parser.parse_args()
    torch.manual_seed(0)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    bench = Bench("tiny", "cpu", torch.float32, 3.5)
    encodings = ["png", *(f"jpeg-q{q}" for q in args.qualities.split(",")), "jpeg-q95-444"]
    items = list(range(args.prompts))
    rows, started = [], time.monotonic()

    def show(new_rows):
        for row in new_rows:
            print(f"{time.monotonic() - started:6.1f}s {row['source']:<6} {row['size']}² {row['encoding']:<12} " +
                  ", ".join(f"{case} {row[case]['passed']}/{row[case]['images']}" for case in CASES
                            if case in row), flush=True)
        rows.extend(new_rows)

    for size in map(int, args.sizes.split(",")):
        singles = [bench.images([i], size, args.steps)[0] for i in items]
        batched = bench.images(items, size, args.steps)
        n = len(items)
        show(evaluate("tiny", size, singles, {
            "batched": batched,
            "batched+bf16-noise": [bf16_noise(img, 7 + i) for i, img in enumerate(batched)],
            "blend-10%": [(1 - BLEND) * batched[i] + BLEND * singles[(i + 1) % n] for i in items],
            "other-prompt": [singles[(i + 1) % n] for i in items]}, encodings, args.steps))
        pictures = photos(size)
        m = len(pictures)
        show(evaluate("photos", size, pictures, {
            "fp32-rounding": [np.clip(p + np.random.default_rng(11 + i).standard_normal(p.shape).astype(np.float32)
                                      * 10 ** (-FP32_PSNR_DB / 20), 0, 1) for i, p in enumerate(pictures)],
            "batched+bf16-noise": [bf16_noise(p, 7 + i) for i, p in enumerate(pictures)],
            "blend-10%": [(1 - BLEND) * pictures[i] + BLEND * pictures[(i + 1) % m] for i in range(m)],
            "other-prompt": [pictures[(i + 1) % m] for i in range(m)]}, encodings, None))
    gpu = None
    if args.gpu_images:
        folder = Path(args.gpu_images)
        gpu = json.loads((folder / "jpeg-gate-images.json").read_text())
        gpu["out"] = gpu["command"].partition("--out ")[2].split(" ")[0]
        for entry in gpu["sizes"]:
            size = entry["size"]
            singles, batched = ([np.ascontiguousarray(a.transpose(2, 0, 1) / np.float32(255)) for a in
                                 np.load(folder / f"jpeg-gate-{size}-{kind}.npz")["images"]]
                                for kind in ("singles", "batched"))
            n = len(singles)
            show(evaluate(args.gpu_label, size, singles, {
                "batched": batched,
                "blend-10%": [(1 - BLEND) * batched[i] + BLEND * singles[(i + 1) % n] for i in range(n)],
                "other-prompt": [singles[(i + 1) % n] for i in range(n)]}, encodings, gpu["steps"]))
    wrong = [f"{r['source']} {r['size']}² {r['encoding']} {case}" for r in rows for case in CASES if case in r
             and ((r[case]["passed"] == r[case]["images"]) != MUST_PASS[case]
                  or 0 < r[case]["passed"] < r[case]["images"])]
    import PIL

    save("jpeg-gate-cpu", {
        "command": shlex.join(["uv", "run", "python", "benchmarks/jpeg_gate.py", *sys.argv[1:]]),
        "weights": "tiny (schnell), fp32, CPU", "gate": GATES["auto"].describe(), "pillow": PIL.__version__,
        "prompts": args.prompts, "steps": args.steps, "photos": list(PHOTOS), "fp32_psnr_db": FP32_PSNR_DB,
        "noise_psnr_db": NOISE_PSNR_DB, "tile_psnr_db": TILE_PSNR_DB, "blend": BLEND,
        "seconds": round(time.monotonic() - started, 1), "gpu_images": gpu, "gpu_label": args.gpu_label,
        "unexpected": wrong, "rows": rows})
    print("unexpected verdicts: " + (", ".join(wrong) or "none"))


if __name__ == "__main__":
    main()
