"""No-op bls stand-in: 1x1 black images and the seeds, at once. With the `stall_after_s` parameter (or the
NOOP_STALL_AFTER_S environment variable) set, the first request that arrives that many seconds after the first one
stalls the instance for 1 s — the coordinated-omission benchmark's server stall."""

import json
import os
import time

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameter = json.loads(args["model_config"])["parameters"]["stall_after_s"]["string_value"]
        value = os.environ.get("NOOP_STALL_AFTER_S") or parameter
        self.stall_after_s = float(value) if value else None
        self.first = None

    def execute(self, requests):
        now = time.monotonic()
        self.first = self.first or now
        if self.stall_after_s is not None and now - self.first >= self.stall_after_s:
            time.sleep(1.0)
            self.stall_after_s = None
        responses = []
        for request in requests:
            count = len(pb_utils.get_input_tensor_by_name(request, "prompt").as_numpy())
            responses.append(pb_utils.InferenceResponse([
                pb_utils.Tensor("images", np.zeros((count, 3, 1, 1), dtype=np.float32)),
                pb_utils.Tensor("seeds", np.arange(count, dtype=np.int64))]))
        return responses
