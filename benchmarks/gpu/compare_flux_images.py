"""Judge the GPU variants' images against each other under the default verification gate, on a CPU: the reference
images flux_bench.py saved per variant (images-<part>-<variant>.npz, float16) in the folders given (one per device
call). Writes benchmarks/results/flux-gpu-<machine>.json (their flux-bench.json merged, the summary recomputed, plus
`image_differences` and `machine`) and renders BENCHMARKS.md.
    uv run python benchmarks/gpu/compare_flux_images.py DIR [DIR ...] --machine h200 [--label 'device tool, ...']
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from flux_async.measure.gates import GATES  # noqa: E402
from flux_async.verification.verifier import compare  # noqa: E402

# (received part, variant) against (reference part, variant): each optimisation against the eager pipeline, fp8
# against bf16, and served against in-process for the same switches
PAIRS = [(("in-process", "bf16"), ("in-process", "eager")), (("in-process", "fp8"), ("in-process", "eager")),
         (("in-process", "fp8"), ("in-process", "bf16")), (("served", "eager"), ("in-process", "eager")),
         (("served", "bf16"), ("in-process", "eager")), (("served", "bf16"), ("served", "eager")),
         (("served", "bf16"), ("in-process", "bf16")), (("served", "fp8"), ("served", "eager")),
         (("served", "fp8"), ("served", "bf16")), (("served", "fp8"), ("in-process", "fp8"))]


def load(folders: list[Path], part: str, variant: str) -> dict[str, np.ndarray] | None:
    paths = [folder / f"images-{part}-{variant}.npz" for folder in folders]
    path = next((p for p in reversed(paths) if p.is_file()), None)
    if path is None:
        return None
    with np.load(path) as data:
        return {key: data[key].astype(np.float32) for key in data.files}


def differences(folder: list[Path]) -> list[dict]:
    """One row per pair found: each image's PSNR and worst-tile PSNR, and whether the default gate passes it."""
    gate, rows = GATES["auto"], []
    for (part, variant), (ref_part, ref_variant) in PAIRS:
        received, reference = load(folder, part, variant), load(folder, ref_part, ref_variant)
        if received is None or reference is None:
            continue
        images = []
        for key in sorted(set(received) & set(reference)):
            result = compare(received[key], reference[key], gate)
            images.append({"image": key, "psnr": result.scores.psnr, "tile_psnr": result.scores.tile_psnr,
                           "max_abs": result.scores.max_abs, "passes_default_gate": result.ok,
                           "reasons": result.reasons})
        rows.append({"received": f"{part} {variant}", "reference": f"{ref_part} {ref_variant}", "images": images,
                     "gate": f"auto: PSNR >= {gate.min_psnr} dB, every 32x32 tile >= {gate.min_tile_psnr} dB"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folders", type=Path, nargs="+", help="what run_flux_bench.sh wrote ($OUT), per call")
    parser.add_argument("--machine", required=True, help="results name: flux-gpu-<machine>.json")
    parser.add_argument("--label", default="device tool, nvidia-h200 kind", help="how the GPU machine was had")
    args = parser.parse_args()
    data: dict = {}
    times = []
    for folder in args.folders:  # later calls add their parts and variants
        part = json.loads((folder / "flux-bench.json").read_text())
        for key in ("in_process", "served", "variants"):
            part[key] = data.get(key, {}) | part.get(key, {})
        times.append(part.get("measured_at", "?"))
        data |= part
    data["measured_at"] = " and ".join(times)
    sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))
    from flux_bench import summary

    data["summary"] = summary(data)
    smi = args.folders[-1] / "nvidia-smi.csv"
    if smi.is_file():
        rows = list(csv.reader(smi.read_text().splitlines()))
        name, memory, driver = (x.strip() for x in rows[1][:3])
        data["machine"] = f"one {name} ({memory}, driver {driver}; {args.label})"
    else:
        data["machine"] = f"{data['gpu']} ({args.label})"
    data["image_differences"] = differences(args.folders)
    for row in data["image_differences"]:
        worst = min((i["psnr"] for i in row["images"] if i["psnr"] is not None), default=None)
        print(f"{row['received']:>18} vs {row['reference']:<18} worst PSNR {worst} "
              f"passes: {all(i['passes_default_gate'] for i in row['images'])}")
    out = ROOT / "benchmarks" / "results" / f"flux-gpu-{args.machine}.json"
    if out.is_file():  # the analysis is written by hand into the results: keep it across re-runs
        data.setdefault("analysis", json.loads(out.read_text()).get("analysis"))
    out.write_text(json.dumps(data, indent=1) + "\n")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import render

    render.main()
    print(f"wrote {out.relative_to(ROOT)} and BENCHMARKS.md")


if __name__ == "__main__":
    main()
