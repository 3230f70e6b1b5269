"""A tutorial-style text-to-image model over FLUX's `bls`: the dynamic batcher hands it several requests, whose
prompts go to `bls` together, and each request gets its own images back as UINT8 NHWC."""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

MAX_PROMPTS = 8  # bls takes at most 8 prompts per request


class TritonPythonModel:
    def initialize(self, args):
        parameters = {k: v["string_value"] for k, v in json.loads(args["model_config"]).get("parameters", {}).items()}
        self.settings = {"num_inference_steps": np.array([int(parameters.get("steps", 4))], dtype=np.int32),
                         "guidance_scale": np.array([float(parameters.get("guidance_scale", 0.0))], dtype=np.float32),
                         "height": np.array([int(parameters.get("height", 1024))], dtype=np.int32),
                         "width": np.array([int(parameters.get("width", 1024))], dtype=np.int32)}
        self.seed = int(parameters.get("seed", 0))  # every image uses it: the same prompt makes the same image

    def execute(self, requests):
        prompts, owners = [], []
        for index, request in enumerate(requests):
            for prompt in pb_utils.get_input_tensor_by_name(request, "prompt").as_numpy().reshape(-1):
                prompts.append(prompt)
                owners.append(index)
        try:
            images = self.generate(prompts)
        except pb_utils.TritonModelException as exc:
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))) for _ in requests]
        return [pb_utils.InferenceResponse([pb_utils.Tensor(
                    "generated_image", np.stack([image for image, owner in zip(images, owners) if owner == index]))])
                for index in range(len(requests))]

    def generate(self, prompts):
        """UINT8 [H, W, 3] images of `prompts`, in order, asking `bls` for at most MAX_PROMPTS at a time."""
        images = []
        for start in range(0, len(prompts), MAX_PROMPTS):
            chunk = prompts[start:start + MAX_PROMPTS]
            inputs = [pb_utils.Tensor("prompt", np.array(chunk, dtype=np.object_)),
                      pb_utils.Tensor("seed", np.full(len(chunk), self.seed, dtype=np.int64)),
                      pb_utils.Tensor("image_encoding", np.array([b"uint8"], dtype=np.object_))]
            inputs += [pb_utils.Tensor(name, value) for name, value in self.settings.items()]
            response = pb_utils.InferenceRequest(model_name="bls", inputs=inputs,
                                                 requested_output_names=["images_uint8"]).exec()
            if response.has_error():
                raise pb_utils.TritonModelException(response.error().message())
            images.extend(pb_utils.get_output_tensor_by_name(response, "images_uint8").as_numpy())
        return images
