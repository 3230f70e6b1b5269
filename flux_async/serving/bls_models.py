"""`bls` and `bls_stream`: validate the request, run the denoising loop, call the stage models through BLS."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from flux_async import contract
from flux_async.pipeline.generate import GenerationRequest, Geometry, Timings, generate
from flux_async.pipeline.validation import InvalidInput, parse_bls_inputs
from flux_async.pipeline.weights import load_tokenizer
from flux_async.serving import encodings, runtime


class StageUnavailable(RuntimeError):
    """A stage model answered with an error (or is not loaded); the message names the model."""


class TritonStageRunner:
    """A `StageRunner` that sends BLS requests to the stage models; tensors travel by DLPack."""

    def __init__(self, device: torch.device):
        self.device = device
        self.memory = {}
        if device.type == "cuda":  # ask the stages for their outputs on our GPU: no host round trip
            self.memory = {"preferred_memory": pb_utils.PreferredMemory(pb_utils.TRITONSERVER_MEMORY_GPU,
                                                                        device.index or 0)}

    async def _call(self, model: str, inputs: list, output: str) -> torch.Tensor:
        request = pb_utils.InferenceRequest(model_name=model, inputs=inputs, requested_output_names=[output],
                                            **self.memory)
        try:
            response = await request.async_exec()
        except Exception as exc:
            raise StageUnavailable(f"stage model '{model}' failed or is unavailable: {exc}") from exc
        if response.has_error():
            raise StageUnavailable(f"stage model '{model}' failed or is unavailable: {response.error().message()}")
        tensor = pb_utils.get_output_tensor_by_name(response, output)
        # clone: the response's buffer is released with the response object
        return torch.from_dlpack(tensor.to_dlpack()).to(self.device).clone()

    @staticmethod
    def _texts(prompts: list[str]):
        return pb_utils.Tensor("text", np.array([[p.encode("utf-8")] for p in prompts], dtype=np.object_))

    async def encode_clip(self, prompts):
        return await self._call(contract.CLIP_ENCODER, [self._texts(prompts)], "pooled_prompt_embeds")

    async def encode_t5(self, prompts, max_sequence_length):
        lengths = np.full((len(prompts), 1), max_sequence_length, dtype=np.int32)
        inputs = [self._texts(prompts), pb_utils.Tensor("max_sequence_length", lengths)]
        return await self._call(contract.T5_ENCODER, inputs, "prompt_embeds")

    async def predict(self, hidden_states, encoder_hidden_states, pooled_projections, timestep, latent_size, guidance):
        n = hidden_states.shape[0]
        inputs = [
            runtime.output_tensor("hidden_states", hidden_states),
            runtime.output_tensor("encoder_hidden_states", encoder_hidden_states),
            runtime.output_tensor("pooled_projections", pooled_projections),
            runtime.output_tensor("timestep", timestep.reshape(n, 1)),
            pb_utils.Tensor("latent_size", np.tile(np.array(latent_size, dtype=np.int32), (n, 1))),
        ]
        if guidance is not None:
            inputs.append(runtime.output_tensor("guidance", guidance.reshape(n, 1).float()))
        return await self._call(contract.DIT_TRANSFORMER, inputs, "noise_pred")

    async def decode(self, latents):
        return await self._call(contract.VAE_DECODER, [runtime.output_tensor("latents", latents)], "images")


class BlsModel:
    """`bls`: N prompts in, images (FP32 [N, 3, H, W], or as `image_encoding` asks) and seeds [N] out
    (docs/bls.md)."""

    model_name = contract.BLS
    runner_class = TritonStageRunner

    @classmethod
    def auto_complete_config(cls, auto_complete_model_config):
        return runtime.complete_config(auto_complete_model_config, cls.model_name)

    def initialize(self, args=None):
        self.config, self.device, self.dtype, self.source = runtime.setup(args)
        self.geometry = Geometry.from_source(self.source)
        self.variant = self.source.variant
        self.tokenizer_2 = load_tokenizer(self.source, "tokenizer_2")
        self.max_pixels = int(runtime.parameter(self.config, "max_pixels_per_request", contract.ENV_MAX_PIXELS,
                                                str(contract.DEFAULT_MAX_PIXELS_PER_REQUEST)))
        self.trace = runtime.trace_enabled(self.config)

    def _t5_token_count(self, prompt: str) -> int:
        return len(self.tokenizer_2(prompt).input_ids)

    def _named_outputs(self, request) -> set[str]:
        """The outputs the client named. Triton lists every output when it named none: that names nothing."""
        named = set(request.requested_output_names())
        every = {spec.name for spec in contract.MODEL_TENSORS[self.model_name][1]}
        return set() if named >= every else named

    def parse(self, request) -> GenerationRequest:
        inputs = {spec.name: runtime.input_array(request, spec.name) for spec in contract.BLS_INPUTS}
        return parse_bls_inputs(inputs, self.variant, self._t5_token_count, self.max_pixels,
                                self._named_outputs(request))

    @staticmethod
    async def image_output(images: torch.Tensor, encoding: str):
        """The images in the request's encoding: `images` FP32, `images_uint8` or `images_png` (docs/bls.md)."""
        name = contract.IMAGE_OUTPUTS[encoding]
        if encoding == "uint8":
            return runtime.output_tensor(name, encodings.uint8_images(images))
        if encoding == "png":
            return pb_utils.Tensor(name, await encodings.png_images(encodings.uint8_images(images)))
        return runtime.output_tensor(name, images.float())

    async def run(self, request: GenerationRequest, on_step=None) -> list:
        timings = Timings() if self.trace else None
        images = await generate(request, self.runner_class(self.device), self.geometry, self.device, self.dtype,
                                on_step=on_step, timings=timings)
        seeds = np.array(request.seeds, dtype=np.int64)
        outputs = [await self.image_output(images, request.image_encoding), pb_utils.Tensor("seeds", seeds)]
        if timings is not None:  # one line per request in the server log (FLUX_ASYNC_TRACE=1)
            timings.mark("outputs")
            pb_utils.Logger.log_info("FLUX_TRACE " + json.dumps({"prompts": len(request.prompts), **timings}))
        return outputs

    def error_for(self, exc: Exception):
        """The error response for a failed request: INVALID_ARG, UNAVAILABLE (a stage) or INTERNAL."""
        if isinstance(exc, InvalidInput):
            return runtime.error_response(str(exc))
        if isinstance(exc, StageUnavailable):
            return runtime.error_response(str(exc), pb_utils.TritonError.UNAVAILABLE)
        return runtime.error_response(f"{self.model_name} failed: {type(exc).__name__}: {exc}",
                                      pb_utils.TritonError.INTERNAL)

    async def handle(self, request):
        """One request → one response; never raises."""
        try:
            return pb_utils.InferenceResponse(output_tensors=await self.run(self.parse(request)))
        except Exception as exc:
            return self.error_for(exc)

    async def execute(self, requests):
        return list(await asyncio.gather(*(self.handle(r) for r in requests)))

    def finalize(self):
        pass


class BlsStreamModel(BlsModel):
    """`bls_stream` (decoupled): a `step`/`total_steps` response after every denoising step, then a FINAL response
    with the images (in `image_encoding`), `seeds` and the last step."""

    model_name = contract.BLS_STREAM

    @classmethod
    def auto_complete_config(cls, auto_complete_model_config):
        auto_complete_model_config.set_model_transaction_policy({"decoupled": True})
        return runtime.complete_config(auto_complete_model_config, cls.model_name)

    @staticmethod
    def _progress(step: int, total: int) -> list:
        return [pb_utils.Tensor("step", np.array([step], dtype=np.int32)),
                pb_utils.Tensor("total_steps", np.array([total], dtype=np.int32))]

    async def stream(self, request) -> None:
        sender = request.get_response_sender()
        final = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL

        async def on_step(step: int, total: int) -> None:
            sender.send(pb_utils.InferenceResponse(output_tensors=self._progress(step, total)))

        try:
            generation = self.parse(request)
            outputs = await self.run(generation, on_step)
            steps = generation.num_inference_steps
            sender.send(pb_utils.InferenceResponse(output_tensors=outputs + self._progress(steps, steps)), flags=final)
        except Exception as exc:
            sender.send(self.error_for(exc), flags=final)

    async def execute(self, requests):
        await asyncio.gather(*(self.stream(r) for r in requests))
        return None
