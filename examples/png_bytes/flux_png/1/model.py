"""A community-style FLUX model over `bls`: PROMPT [1] in, GENERATED_IMAGE [1] out holding the PNG file's bytes."""

import json
import random

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.settings = {"num_inference_steps": np.array([int(parameters.get("steps", 4))], dtype=np.int32),
                         "height": np.array([int(parameters.get("height", 1024))], dtype=np.int32),
                         "width": np.array([int(parameters.get("width", 1024))], dtype=np.int32)}

    def execute(self, requests):
        return [self.answer(request) for request in requests]

    def answer(self, request):
        prompt = pb_utils.get_input_tensor_by_name(request, "PROMPT").as_numpy().reshape(-1)
        seed = pb_utils.get_input_tensor_by_name(request, "SEED")
        seed = int(seed.as_numpy().reshape(-1)[0]) if seed is not None else random.randrange(2**63)
        inputs = [pb_utils.Tensor("prompt", prompt.astype(np.object_)),
                  pb_utils.Tensor("seed", np.array([seed], dtype=np.int64)),
                  pb_utils.Tensor("image_encoding", np.array([b"png"], dtype=np.object_))]
        inputs += [pb_utils.Tensor(name, value) for name, value in self.settings.items()]
        response = pb_utils.InferenceRequest(model_name="bls", inputs=inputs,
                                             requested_output_names=["images_png"]).exec()
        if response.has_error():
            return pb_utils.InferenceResponse(error=pb_utils.TritonError(response.error().message()))
        files = pb_utils.get_output_tensor_by_name(response, "images_png").as_numpy()
        return pb_utils.InferenceResponse([pb_utils.Tensor("GENERATED_IMAGE", files.reshape(1).astype(np.object_))])
