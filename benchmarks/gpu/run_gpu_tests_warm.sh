#!/usr/bin/env bash
# On a GPU machine that an earlier call set up (setup_device.sh, the server unpacked), carrying .whl-metrics/ and
# .whl-tiny/ only (with .whl/ and .whl-server/ they pass the device tool's 64 MiB): add scikit-image and the tiny
# weights, then run the GPU tests (gpu_tests.sh: the served tiny pipeline on the default switches) and the GPU unit
# tests of the speed switches and CUDA graphs. Writes to $1.
set -uo pipefail
out=${1:-/tmp/gpu-tests}
mkdir -p "$out"
[ -x /tmp/fa/bin/python ] || { echo "not set up: run setup_device.sh first (carry .whl/)"; exit 3; }
/tmp/fa/bin/python -m pip install -q --no-index --no-deps --no-compile .whl-metrics/*.whl
tar -C /tmp -xJf .whl-tiny/tiny-flux.tar.xz
cache=$(/tmp/fa/bin/python -c "from flux_async.pipeline.weights import cache_dir, TINY_FORMAT, TINY_SEED; print(cache_dir() / f'tiny-flux-schnell-seed{TINY_SEED}-v{TINY_FORMAT}')")
rm -rf "$cache" && cp -r /tmp/tiny-flux "$cache"
/tmp/fa/bin/python -m pytest -p no:cacheprovider -p flux_async.testing.pytest_plugin -n 0 --run-gpu -m gpu -rs -q \
    tests/unit/test_speedups.py tests/unit/test_cuda_graphs.py 2>&1 | tee "$out/pytest-unit.log"
bash benchmarks/gpu/gpu_tests.sh "$out"
