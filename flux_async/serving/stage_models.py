"""The four stage models. Triton's dynamic batcher hands each `execute` several requests; requests that can share
one forward pass (same latent grid, same text length) are concatenated, run once, and split back."""

from __future__ import annotations

import json
import time
from collections import defaultdict

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from flux_async import contract
from flux_async.pipeline.stages import ClipStage, DitStage, T5Stage, VaeStage
from flux_async.pipeline.validation import InvalidInput, decode_texts
from flux_async.serving import runtime
from flux_async.serving.warmup import warm_transformer, warm_vae


class StageModel:
    """Base: parse each request into (group key, batch items), run each group as one batch, answer per request."""

    model_name: str
    stage_class: type
    optimised = False  # takes the speed switches (pipeline/speedups.py) and the warm-up

    @classmethod
    def auto_complete_config(cls, auto_complete_model_config):
        return runtime.complete_config(auto_complete_model_config, cls.model_name)

    def initialize(self, args=None):
        self.config, self.device, self.dtype, self.source = runtime.setup(args)
        self.stage = self.make_stage()
        self.trace = runtime.trace_enabled(self.config)

    def make_stage(self):
        """The stage; for the optimised ones (transformer, VAE) with their speed switches, published, and warmed up."""
        if not self.optimised:
            return self.stage_class(self.source, self.device, self.dtype)
        speedups = runtime.speedups(self.config, self.device)
        runtime.publish_settings(self.model_name, self.dtype, speedups)
        stage = self.stage_class(self.source, self.device, self.dtype, speedups)
        runtime.warm_up(self.model_name, self.config, lambda sizes: self.warm(stage, sizes))
        return stage

    def warm(self, stage, sizes: list[tuple[int, int]]) -> float:
        """Run `stage` once per size (flux_async/serving/warmup.py); seconds taken."""
        raise NotImplementedError

    def parse(self, request) -> tuple[tuple, dict]:
        """Return (group key, inputs with a leading batch dimension)."""
        raise NotImplementedError

    def run(self, key: tuple, batch: dict) -> dict[str, torch.Tensor]:
        """Run one concatenated batch; return outputs with a leading batch dimension."""
        raise NotImplementedError

    def execute(self, requests):
        responses = [None] * len(requests)
        groups: dict[tuple, list[tuple[int, dict]]] = defaultdict(list)
        for index, request in enumerate(requests):
            try:
                key, items = self.parse(request)
                groups[key].append((index, items))
            except (InvalidInput, ValueError) as exc:
                responses[index] = runtime.error_response(f"{self.model_name}: {exc}")
        for key, members in groups.items():
            self._run_group(key, members, responses)
        return responses

    def _run_group(self, key, members, responses):
        sizes = [_batch_size(items) for _, items in members]
        batch = {name: _concat([items[name] for _, items in members]) for name in members[0][1]}
        try:
            outputs = self._traced_run(key, batch, sum(sizes)) if self.trace else self.run(key, batch)
        except torch.cuda.OutOfMemoryError as exc:  # this batch fails; the cache is freed and the model keeps serving
            torch.cuda.empty_cache()
            message = (f"{self.model_name} ran out of GPU memory for a batch of {sum(sizes)} item(s) of "
                       f"{len(members)} request(s): {exc}")
            for index, _ in members:
                responses[index] = runtime.error_response(message, pb_utils.TritonError.UNAVAILABLE)
            return
        except Exception as exc:  # one failing batch answers its own requests; the model keeps serving
            for index, _ in members:
                responses[index] = runtime.error_response(f"{self.model_name} failed: {type(exc).__name__}: {exc}",
                                                          pb_utils.TritonError.INTERNAL)
            return
        offsets = np.cumsum([0] + sizes)
        for (index, _), start, stop in zip(members, offsets[:-1], offsets[1:]):
            tensors = [runtime.output_tensor(name, value[start:stop]) for name, value in outputs.items()]
            responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)

    def _traced_run(self, key, batch, items: int) -> dict[str, torch.Tensor]:
        """`run`, logging its wall time and, on a GPU, the device time between CUDA events around it."""
        cuda = self.device.type == "cuda"
        if cuda:
            start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
        started = time.perf_counter()
        outputs = self.run(key, batch)
        trace = {"model": self.model_name, "items": items}
        if cuda:
            stop.record()
            stop.synchronize()
            trace["device_ms"] = round(start.elapsed_time(stop), 3)
        trace["wall_ms"] = round((time.perf_counter() - started) * 1000, 3)
        pb_utils.Logger.log_info("FLUX_STAGE_TRACE " + json.dumps(trace))
        return outputs

    def finalize(self):
        self.stage = None


def _batch_size(items: dict) -> int:
    first = next(iter(items.values()))
    return len(first)


def _concat(values: list):
    if values[0] is None:
        return None
    if isinstance(values[0], list):
        return [x for v in values for x in v]
    return torch.cat(values) if len(values) > 1 else values[0]


def _required(request, name: str, read=runtime.input_tensor):
    """A required input, read as a torch tensor (default) or with `runtime.input_array`."""
    value = read(request, name)
    if value is None:
        raise InvalidInput(name, f"input '{name}' is required")
    return value


def _same_rows(name: str, array: np.ndarray) -> tuple:
    """The one row every item of a request shares (e.g. its latent size); rejects requests that mix them."""
    rows = {tuple(row) for row in array.reshape(array.shape[0], -1).tolist()}
    if len(rows) != 1:
        raise InvalidInput(name, f"{name} must be the same for every item of a request, got {sorted(rows)}")
    return rows.pop()


class ClipEncoderModel(StageModel):
    """text [N, 1] BYTES → pooled_prompt_embeds [N, hidden]."""

    model_name, stage_class = contract.CLIP_ENCODER, ClipStage

    def parse(self, request):
        return (), {"text": decode_texts(_required(request, "text", runtime.input_array), "text")}

    def run(self, key, batch):
        return {"pooled_prompt_embeds": self.stage.encode(batch["text"])}


class T5EncoderModel(StageModel):
    """text [N, 1] BYTES, max_sequence_length [N, 1] → prompt_embeds [N, L, d]."""

    model_name, stage_class = contract.T5_ENCODER, T5Stage

    def parse(self, request):
        texts = decode_texts(_required(request, "text", runtime.input_array), "text")
        (length,) = _same_rows("max_sequence_length", _required(request, "max_sequence_length", runtime.input_array))
        if not contract.MIN_SEQUENCE_LENGTH <= length <= contract.MAX_SEQUENCE_LENGTH:
            raise InvalidInput("max_sequence_length", f"max_sequence_length must be in "
                               f"[{contract.MIN_SEQUENCE_LENGTH}, {contract.MAX_SEQUENCE_LENGTH}], got {length}")
        return (int(length),), {"text": texts}

    def run(self, key, batch):
        return {"prompt_embeds": self.stage.encode(batch["text"], key[0])}


class DitTransformerModel(StageModel):
    """One denoising step for packed latents; items batch together when their grid and text length match."""

    model_name, stage_class = contract.DIT_TRANSFORMER, DitStage

    optimised = True

    def warm(self, stage, sizes):
        return warm_transformer(stage, self.source, sizes)

    def parse(self, request):
        items = {name: _required(request, name)
                 for name in ("hidden_states", "encoder_hidden_states", "pooled_projections", "timestep")}
        grid = _same_rows("latent_size", _required(request, "latent_size", runtime.input_array))
        config = self.stage.transformer.config
        for name, axis, expected in (("hidden_states", 2, config.in_channels),
                                     ("encoder_hidden_states", 2, config.joint_attention_dim),
                                     ("pooled_projections", 1, config.pooled_projection_dim)):
            if items[name].shape[axis] != expected:
                raise InvalidInput(name, f"{name} must have {expected} channels (this transformer's), got "
                                         f"{items[name].shape[axis]}")
        seq = items["hidden_states"].shape[1]
        if grid[0] * grid[1] != seq:
            raise InvalidInput("latent_size", f"latent_size {list(grid)} does not match hidden_states: "
                               f"{grid[0]} x {grid[1]} != {seq} tokens")
        items["guidance"] = runtime.input_tensor(request, "guidance")
        if self.stage.guidance_embeds and items["guidance"] is None:
            raise InvalidInput("guidance", "input 'guidance' is required: this transformer has a guidance embedding")
        key = (grid, tuple(items["hidden_states"].shape[1:]), tuple(items["encoder_hidden_states"].shape[1:]),
               items["guidance"] is not None)
        return key, items

    def run(self, key, batch):
        guidance = batch["guidance"].reshape(-1) if batch["guidance"] is not None else None
        noise = self.stage.predict(batch["hidden_states"], batch["encoder_hidden_states"],
                                   batch["pooled_projections"], batch["timestep"].reshape(-1), key[0], guidance)
        return {"noise_pred": noise}


class VaeDecoderModel(StageModel):
    """latents [N, C, h, w] → images [N, 3, H, W] FP32 in [0, 1]."""

    model_name, stage_class = contract.VAE_DECODER, VaeStage

    optimised = True

    def warm(self, stage, sizes):
        return warm_vae(stage, self.source, sizes)

    def parse(self, request):
        latents = _required(request, "latents")
        channels = self.stage.vae.config.latent_channels
        if latents.shape[1] != channels:
            raise InvalidInput("latents", f"latents must have {channels} channels (this VAE's), got {latents.shape[1]}")
        return tuple(latents.shape[1:]), {"latents": latents}

    def run(self, key, batch):
        return {"images": self.stage.decode(batch["latents"])}
