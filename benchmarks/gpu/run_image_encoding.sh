#!/usr/bin/env bash
# On the GPU machine (after benchmarks/gpu/prepare.sh here; .whl carried, .whl-metrics not needed): what returning
# images as FP32, UINT8 or PNG costs (benchmarks/image_encoding_cost.py) against a FLUX.1-schnell-sized server in
# bf16 (`serve --weights preset:flux1-schnell`), 1 and 4 images of 512² and 1024², 4 steps. Results to $1 (default
# $OUT): image-encoding-cost-h200.json, the client's and the server's logs, nvidia-smi.csv.
# Then, here: copy image-encoding-cost-h200.json to benchmarks/results/, set its "machine" to the GPU machine in
# words, and run `uv run python benchmarks/render.py`.
# REPEATS (default 7) and STEPS (default 4) change the run.
set -uo pipefail
out=${1:-$OUT}
mkdir -p "$out"
/tmp/fa/bin/python -c "import flux_async, tritonclient.grpc, pytriton" 2>/dev/null ||
    bash benchmarks/gpu/setup_device.sh > "$out/setup.log" 2>&1 || { cat "$out/setup.log"; exit 1; }
echo "set up after ${SECONDS}s"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv > "$out/nvidia-smi.csv" || true
py=/tmp/fa/bin/python
source benchmarks/gpu/serve.sh
serve "$out" 420 --weights preset:flux1-schnell || exit 1
PYTHONUNBUFFERED=1 $py benchmarks/image_encoding_cost.py --url localhost:8001 --machine h200 \
    --label 'H200, preset:flux1-schnell, bf16' --prompts 1 4 --sizes 512 1024 --steps "${STEPS:-4}" \
    --repeats "${REPEATS:-7}" 2>&1 | grep -v -i warn | tee "$out/image-encoding.log"
status=${PIPESTATUS[0]}
cp benchmarks/results/image-encoding-cost-h200.json "$out/" 2>/dev/null || echo "no result file (client exit $status)"
echo "client done after ${SECONDS}s (exit $status)"
kill -INT $server; wait $server
tail -n 5 "$out/serve.log"
exit "$status"
