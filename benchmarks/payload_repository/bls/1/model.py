"""Payload stand-in for bls: answers at once with deterministic FP32 images in [0, 1) and the seeds. An image depends
only on (seed, height, width), so a prompt's image is bitwise the same alone or batched; images are cached (LRU) so
that drawing them is not the server's bottleneck."""

from collections import OrderedDict

import numpy as np
import triton_python_backend_utils as pb_utils

DEFAULT_SEED = 0  # prompt i's seed when the request has none: DEFAULT_SEED + i
DEFAULT_SIZE = 1024
CACHED_IMAGES = 16


class TritonPythonModel:
    def initialize(self, args):
        self.images = OrderedDict()

    def image(self, seed: int, height: int, width: int) -> np.ndarray:
        """The [3, H, W] image of (seed, height, width), drawn once."""
        key = (seed, height, width)
        if key in self.images:
            self.images.move_to_end(key)
        else:
            self.images[key] = np.random.default_rng(seed).random((3, height, width), dtype=np.float32)
            if len(self.images) > CACHED_IMAGES:
                self.images.popitem(last=False)
        return self.images[key]

    def execute(self, requests):
        return [self.answer(request) for request in requests]

    def answer(self, request):
        count = len(pb_utils.get_input_tensor_by_name(request, "prompt").as_numpy())
        seeds = _input(request, "seed")
        seeds = np.arange(DEFAULT_SEED, DEFAULT_SEED + count, dtype=np.int64) if seeds is None else seeds.reshape(-1)
        if seeds.size != count:
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(
                f"seed must hold one value per prompt ({count}), got {seeds.size}"))
        height, width = (int(_input(request, name, [DEFAULT_SIZE])[0]) for name in ("height", "width"))
        images = np.stack([self.image(int(seed), height, width) for seed in seeds])
        return pb_utils.InferenceResponse([pb_utils.Tensor("images", images),
                                           pb_utils.Tensor("seeds", seeds.astype(np.int64))])


def _input(request, name: str, default=None):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return default if tensor is None else tensor.as_numpy()
