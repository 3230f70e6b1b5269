#!/usr/bin/env bash
# On the GPU machine (after benchmarks/gpu/prepare.sh here; .whl and .whl-metrics carried): the verification gate
# against a FLUX.1-schnell-sized server in bf16. (1) scenarios/burst.yaml at 1024x1024 under the default gate, (2) the
# same at its own 256x256 with the correct, noisy and broken models of tests/fixtures swapped in
# (benchmarks/verify_gate.py), (3) a short capacity search of scenarios/capacity-gpu.yaml, verifying a sample, (4) the
# tests marked gpu. STEPS (default "1024 cli fixtures capacity tests") picks some. Everything lands in $1 (default
# $OUT), packed as gate-served.tar.gz.
set -uo pipefail
out=${1:-$OUT}
mkdir -p "$out"
/tmp/fa/bin/python -c "import flux_async, filelock, skimage" 2>/dev/null || bash benchmarks/gpu/setup_device.sh > "$out/setup.log" 2>&1 || { cat "$out/setup.log"; exit 1; }
py=/tmp/fa/bin/python
source benchmarks/gpu/serve.sh
serve "$out" 400 --weights preset:flux1-schnell --http-port 18000 --grpc-port 18001 --metrics-port 18002 \
    --model-control-mode explicit || exit 1
steps=" ${STEPS:-1024 cli fixtures capacity tests} "
want() { [[ "$steps" == *" $1 "* ]] && echo "== $1 (${SECONDS}s)"; }
want 1024 && $py benchmarks/verify_gate.py --http-url localhost:18000 --grpc-url localhost:18001 --label h200-1024 \
    --size 1024x1024 --duration 16 --cases correct --out "$out/verify-gate-h200-1024.json" > "$out/verify-1024.log" 2>&1; cut -c1-300 "$out/verify-1024.log" | grep '^{' || tail -n 5 "$out/verify-1024.log"
want cli && $py -m flux_async run scenarios/burst.yaml --url localhost:18001 --no-progress --report "$out/burst.json" \
    --html "$out/burst.html" > "$out/burst.log" 2>&1; grep -i "verification\|gate\|passing\|PASSED\|FAILED" "$out/burst.log"
want fixtures && $py benchmarks/verify_gate.py --http-url localhost:18000 --grpc-url localhost:18001 --label h200 \
    --cases "${CASES:-correct,bf16-noise,dit_swap,dit_cross,bls_leak,bls_seed,bls_blend}" --out "$out/verify-gate-h200.json" \
    > "$out/verify.log" 2>&1; cut -c1-300 "$out/verify.log" | grep '^{' || tail -n 5 "$out/verify.log"
want capacity && $py -m flux_async capacity scenarios/capacity-gpu.yaml --url localhost:18001 --start 1.0 --max 1.3 \
    --step-duration 10 --repeats 1 --precision 0.25 --report "$out/capacity.json" > "$out/capacity.log" 2>&1
grep -i "verification\|gate\|passing\|capacity:" "$out/capacity.log" | head
want tests && $py -m pytest -p no:cacheprovider -p flux_async.testing.pytest_plugin --run-gpu -m gpu -rs -q \
    --flux-http-url localhost:18000 --flux-grpc-url localhost:18001 tests/regression > "$out/pytest.log" 2>&1 &&
    tail -n 3 "$out/pytest.log"
kill -INT %1; wait
tar -C "$out" -czf /tmp/gate-served.tar.gz . && rm -rf "${out:?}"/* && mv /tmp/gate-served.tar.gz "$out/"
