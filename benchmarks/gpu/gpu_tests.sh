#!/usr/bin/env bash
# On the GPU machine, after setup_device.sh: serve triton_models/ on the tiny weights (bf16 on the GPU) with the
# carried server, then run the tests marked gpu against it. Writes the server log and test output to $1.
set -uo pipefail
out=${1:-/tmp/gpu-tests}
mkdir -p "$out"
source benchmarks/gpu/serve.sh
serve "$out" 240 --weights /tmp/tiny-flux --http-port 18000 --grpc-port 18001 --metrics-port 18002 \
    --model-control-mode explicit || exit 1
/tmp/fa/bin/python -m pytest -p no:cacheprovider -p flux_async.testing.pytest_plugin -n 0 --run-gpu -m gpu -rs -v --flux-http-url localhost:18000 \
    --flux-grpc-url localhost:18001 tests/integration/test_gpu_memory.py tests/regression 2>&1 | tee "$out/pytest.log"
cp test-artifacts/batch_memory.json "$out/" 2>/dev/null
kill -INT %1; wait
