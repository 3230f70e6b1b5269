#!/usr/bin/env bash
# On a multi-GPU machine (repository root, .whl/ carried, and .whl-server/ for anything served): set up the environment if needed, then run scale_bench.py
# (one Triton per GPU; `capacity` against 1, 2, 4 of them).
# Usage: bash benchmarks/gpu/run_scale_bench.sh OUT_DIR [scale_bench.py options, e.g. --counts 1,2,4]
# Then, here: copy OUT_DIR/scale-bench.json to benchmarks/results/scale-<gpus>.json, add "machine" and "measured_at"
# (and "analysis"), and run `uv run python benchmarks/render.py`.
set -euo pipefail
out=${1:-/tmp/scale-bench}
mkdir -p "$out"
[ -x /tmp/fa/bin/python ] || bash benchmarks/gpu/setup_device.sh > "$out/setup.log" 2>&1
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv > "$out/nvidia-smi.csv" || true
nvidia-smi topo -m > "$out/topology.txt" 2>&1 || true
PYTHONUNBUFFERED=1 /tmp/fa/bin/python benchmarks/gpu/scale_bench.py \
    --tritonserver /tmp/srv/tritonserver/bin/tritonserver --out "$out/scale-bench.json" "${@:2}" 2>&1 \
    | grep -v -i "warn" | tee "$out/scale-bench.out"
