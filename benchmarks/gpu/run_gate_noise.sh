#!/usr/bin/env bash
# On the GPU machine (after benchmarks/gpu/prepare.sh here; .whl carried): the verification gate's noise and bug
# measurements (benchmarks/gate_noise.py) for the FLUX.1-schnell-sized and -dev-sized random presets in bf16, one
# preset per GPU when there are two. Results to $1 (default $OUT).
set -uo pipefail
out=${1:-$OUT}
mkdir -p "$out"
bash benchmarks/gpu/setup_device.sh > "$out/setup.log" 2>&1 || { cat "$out/setup.log"; exit 1; }
gpus=$(nvidia-smi -L | wc -l)
schnell() {
    /tmp/fa/bin/python benchmarks/gate_noise.py --weights preset:flux1-schnell --sizes 512,1024 --steps 4,28 \
        --graphs on,off --items 8 --items-28 4 --budget-s "${BUDGET:-420}" --out "$out/gate-noise-h200-schnell.json"
}
dev() {
    /tmp/fa/bin/python benchmarks/gate_noise.py --weights preset:flux1-dev --sizes 1024,512 --steps 4,28 \
        --graphs on --items 8 --items-28 4 --budget-s "${BUDGET:-420}" --out "$out/gate-noise-h200-dev.json"
}
if [ "$gpus" -ge 2 ]; then
    CUDA_VISIBLE_DEVICES=0 schnell > "$out/schnell.log" 2>&1 &
    CUDA_VISIBLE_DEVICES=1 dev > "$out/dev.log" 2>&1 &
    wait
else
    schnell > "$out/schnell.log" 2>&1
    dev > "$out/dev.log" 2>&1
fi
tail -n 40 "$out"/*.log
