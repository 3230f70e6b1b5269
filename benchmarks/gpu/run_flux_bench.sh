#!/usr/bin/env bash
# On the GPU machine (repository root, .whl/ carried, and .whl-server/ for anything served): set up the environment if needed (setup_device.sh also puts the
# carried tiny folder where the preset finds its tokenizers and scheduler), then run flux_bench.py.
# Usage: bash benchmarks/gpu/run_flux_bench.sh OUT_DIR [flux_bench.py arguments, e.g. --part in-process]
#        bash benchmarks/gpu/run_flux_bench.sh OUT_DIR --dit-gap   (the transformer-step probe, dit_gap.py, instead)
# The measurement (BENCHMARKS.md) took two calls on one machine, the second with the same OUT_DIR/flux-bench.json
# (both parts write into it): `--part in-process`, then `--part served --memory`. Then, here:
#   uv run python benchmarks/gpu/compare_flux_images.py OUT_DIR --machine h200   (writes the results and renders)
set -euo pipefail
out=${1:-/tmp/flux-bench}
mkdir -p "$out"
[ -x /tmp/fa/bin/python ] || bash benchmarks/gpu/setup_device.sh > "$out/setup.log" 2>&1
bash benchmarks/gpu/unpack_server.sh
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/nvidia-smi.csv" || true
if [ "${2:-}" = "--dit-gap" ]; then
    PYTHONUNBUFFERED=1 exec /tmp/fa/bin/python benchmarks/gpu/dit_gap.py --tritonserver /tmp/srv/tritonserver/bin/tritonserver \
        --out "$out/dit-gap.json"
fi
PYTHONUNBUFFERED=1 /tmp/fa/bin/python benchmarks/gpu/flux_bench.py --tritonserver /tmp/srv/tritonserver/bin/tritonserver \
    --out "$out/flux-bench.json" --images "$out" "${@:2}" 2>&1 | grep -v -i "warn" | tee -a "$out/flux-bench.log"
