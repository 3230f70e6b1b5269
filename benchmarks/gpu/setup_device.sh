#!/usr/bin/env bash
# On the GPU machine (run from the repository root, .whl/ carried; .whl-server/ and .whl-tiny/ when carried): a venv whose own numpy<2 and protobuf<7 shadow
# the image's (the python-backend stub needs them: docs/triton-from-pypi.md). It sees the image's packages (torch,
# transformers, ...) through a folder of links appended by a .pth file, minus the image's numpy and the packages
# built against numpy 2 that break beside numpy 1.26 (scipy first: transformers imports it when present).
# flux_async comes from this checkout; the server tarball and the tiny weights are unpacked under /tmp.
set -euo pipefail
base=$(command -v python3)
"$base" -m venv /tmp/fa
site=$(/tmp/fa/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
image_site=$("$base" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
/tmp/fa/bin/python -m pip install --quiet --no-index --no-deps --no-compile .whl/*.whl
if compgen -G ".whl-metrics/*.whl" > /dev/null; then  # carried on its own (size): scikit-image and scipy for numpy 1
    /tmp/fa/bin/python -m pip install --quiet --no-index --no-deps --no-compile .whl-metrics/*.whl
fi
echo "$PWD" > "$site/flux_async_checkout.pth"
# serve checks for the server extra by finding the module `pytriton` (flux_async/extras.py); here the carried
# tritonserver stands in for nvidia-pytriton's bundled one (serve --tritonserver), so an empty package stands in for it
mkdir -p "$site/pytriton" && echo '"""Stand-in for nvidia-pytriton: the carried tritonserver is used."""' > "$site/pytriton/__init__.py"
mkdir -p /tmp/fa/image-site
deny='^(numpy|scipy|sklearn|scikit_learn|pandas|numba|cupy|cv2|opencv|pyarrow|h5py|skimage|scikit_image|jax|jaxlib|statsmodels|tensorstore|xarray|onnxruntime)([-_.].*)?$'
for entry in "$image_site"/*; do
    name=$(basename "$entry")
    [[ "$name" =~ $deny || "$name" == *.pth ]] || ln -sfn "$entry" "/tmp/fa/image-site/$name"
done
echo /tmp/fa/image-site > "$site/zz_image_site_packages.pth"
bash benchmarks/gpu/unpack_server.sh
tar -C /tmp -xJf .whl/tiny-flux-tokenizers.tar.xz
[ ! -f .whl-tiny/tiny-flux.tar.xz ] || tar -C /tmp -xJf .whl-tiny/tiny-flux.tar.xz  # the tiny weights: GPU tests
/tmp/fa/bin/python -c 'import numpy, torch, diffusers, transformers, tritonclient.grpc, flux_async; print("numpy", numpy.__version__, "torch", torch.__version__, "cuda", torch.cuda.is_available(), "diffusers", diffusers.__version__, "transformers", transformers.__version__)'
# the presets take their tokenizers and scheduler from the tiny folder in the cache: put the carried one there
for variant in schnell dev; do  # both presets read the same tokenizers; building a tiny folder here needs open_clip
    cache=$(/tmp/fa/bin/python -c "from flux_async.pipeline.weights import cache_dir, TINY_FORMAT, TINY_SEED; print(cache_dir() / f'tiny-flux-$variant-seed{TINY_SEED}-v{TINY_FORMAT}')")
    mkdir -p "$(dirname "$cache")" && rm -rf "$cache" && cp -r /tmp/tiny-flux "$cache"
done
