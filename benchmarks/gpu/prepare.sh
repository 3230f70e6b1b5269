#!/usr/bin/env bash
# Prepare what the GPU machine (no package registry, Python 3.12) needs, git-ignored folders the device tool carries:
# into .whl-server/ the bundled tritonserver with the Python 3.12 stub and its libraries as one xz tarball (25 MB; a
# call that only runs in-process leaves it behind: .whl/ and .whl-server/ together with torchao reach the tool's
# 64 MiB); into .whl-tiny/ the tiny weights (8 MB, for the GPU tests); into .whl/ the wheels
# the image lacks (diffusers, tritonclient, python-rapidjson, hdrhistogram, pytest-asyncio) and the stub's numpy<2 /
# protobuf<7, and the tiny weights; into .whl-metrics/ scikit-image and scipy for numpy 1 (the verification gate's
# metrics), a second carry because both folders together pass the device tool's 64 MiB. Run from the repository root
# after `uv sync`.
set -euo pipefail
out=.whl
py=3.12
rm -rf "$out" .whl-metrics .whl-server .whl-tiny && mkdir -p "$out" .whl-metrics .whl-server .whl-tiny
site=$(uv run python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
stage=$(mktemp -d)
mkdir -p "$stage/tritonserver/backends/python" "$stage/tritonserver/lib"
cp -a "$site/pytriton/tritonserver/bin" "$site/pytriton/tritonserver/caches" "$stage/tritonserver/"
cp -a "$site/pytriton/tritonserver/backends/python/." "$stage/tritonserver/backends/python/"
cp -a "$site/pytriton/tritonserver/python_backend_stubs/$py/triton_python_backend_stub" "$stage/tritonserver/backends/python/"
cp -a "$site/nvidia_pytriton.libs/." "$stage/tritonserver/lib/"
rm -f "$stage"/tritonserver/lib/libpython3-*  # the 3.13 stub's; ours links the image's own libpython3.12
tar -C "$stage" -cf - tritonserver | xz -T0 -9 > ".whl-server/tritonserver-py$py.tar.xz"
uv run python -m flux_async make-tiny-flux "$stage/tiny-flux" >/dev/null
tar -C "$stage" -cf - tiny-flux | xz -T0 -9 > ".whl-tiny/tiny-flux.tar.xz"
# the presets read only the tiny folder's tokenizers and scheduler: those alone (1 MB) travel in .whl/
tar -C "$stage" --exclude='*.safetensors' -cf - tiny-flux | xz -T0 -9 > "$out/tiny-flux-tokenizers.tar.xz"
rm -rf "$stage"
download() {
    python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version $py --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        --platform manylinux1_x86_64 -d "${out}" "$@"
}
download "diffusers==$(uv run python -c 'import diffusers; print(diffusers.__version__)')" \
    "tritonclient==$(uv run python -c 'import importlib.metadata as m; print(m.version("tritonclient"))')" \
    python-rapidjson==1.25 numpy==1.26.4 protobuf==6.33.6 \
    "pytest-asyncio==$(uv run python -c 'import importlib.metadata as m; print(m.version("pytest-asyncio"))')" \
    "hdrhistogram==$(uv run python -c 'import importlib.metadata as m; print(m.version("hdrhistogram"))')" \
    "pbr==$(uv run python -c 'import importlib.metadata as m; print(m.version("pbr"))')"
download --platform manylinux_2_24_x86_64 "torchao==$(uv run python -c 'import importlib.metadata as m; print(m.version("torchao"))' 2>/dev/null || echo 0.18.0)"
for package in scikit-image scipy lazy_loader imageio tifffile networkx; do
    out=.whl-metrics download "$package==$(uv run python -c "import importlib.metadata as m; print(m.version('$package'))")"
done
du -ch "$out"/* .whl-metrics/* .whl-server/* .whl-tiny/* | sort -h
