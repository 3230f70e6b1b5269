#!/usr/bin/env bash
# On the GPU machine (repository root, .whl/ carried): set up the environment if needed (setup_device.sh also puts the
# carried tiny folder where the preset finds its tokenizers and scheduler), then run flux_bench.py.
# Usage: bash benchmarks/gpu/run_flux_bench.sh OUT_DIR [--eager] [--in-process-after]
#        bash benchmarks/gpu/run_flux_bench.sh OUT_DIR --dit-gap   (the transformer-step probe, dit_gap.py, instead)
# Then, here: copy OUT_DIR/flux-bench.json to benchmarks/results/flux-gpu-<gpu>.json (an --eager run to
# flux-gpu-<gpu>-eager.json, a --dit-gap run's dit-gap.json to dit-gap-<gpu>.json), add "machine" and "measured_at"
# (and "analysis"), and run `uv run python benchmarks/render.py`.
set -euo pipefail
out=${1:-/tmp/flux-bench}
mkdir -p "$out"
[ -x /tmp/fa/bin/python ] || bash benchmarks/gpu/setup_device.sh > "$out/setup.log" 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia-smi.csv" || true
if [ "${2:-}" = "--dit-gap" ]; then
    PYTHONUNBUFFERED=1 exec /tmp/fa/bin/python benchmarks/gpu/dit_gap.py --tritonserver /tmp/srv/tritonserver/bin/tritonserver \
        --out "$out/dit-gap.json"
fi
PYTHONUNBUFFERED=1 /tmp/fa/bin/python benchmarks/gpu/flux_bench.py --tritonserver /tmp/srv/tritonserver/bin/tritonserver \
    --out "$out/flux-bench.json" "${@:2}" 2>&1 | grep -v -i "warn" | tee "$out/flux-bench.log"
