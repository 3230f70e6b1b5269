"""Validation of `bls` inputs (docs/bls.md): every rejection names the input and its allowed range."""

from __future__ import annotations

import math
import secrets
from collections.abc import Callable, Collection, Mapping

import numpy as np

from flux_async import contract as c
from flux_async.pipeline.generate import GenerationRequest


class InvalidInput(ValueError):
    """A request input outside its contract; `field` names the input."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


_NUMPY_KINDS = {"INT32": np.int32, "INT64": np.int64, "FP32": np.float32}


def _scalar(inputs: Mapping[str, np.ndarray | None], name: str, default):
    value = inputs.get(name)
    if value is None:
        return default
    spec = next(s for s in c.BLS_INPUTS if s.name == name)
    if value.dtype != _NUMPY_KINDS[spec.datatype]:
        raise InvalidInput(name, f"{name} must be {spec.datatype}, got {value.dtype}")
    if value.size != 1:
        raise InvalidInput(name, f"{name} must hold exactly 1 value, got shape {list(value.shape)}")
    return value.reshape(-1)[0].item()


def _in_range(name: str, value, low, high, extra: str = ""):
    if not (low <= value <= high):
        raise InvalidInput(name, f"{name} must be {extra}in [{low}, {high}], got {value}")
    return value


def _prompts(raw: np.ndarray | None) -> tuple[str, ...]:
    if raw is None:
        raise InvalidInput("prompt", "prompt is required: a BYTES tensor of 1 to 8 UTF-8 strings")
    if raw.dtype != np.object_ and raw.dtype.kind not in "SU":
        raise InvalidInput("prompt", f"prompt must be BYTES (UTF-8 strings), got {raw.dtype}")
    if raw.ndim != 1:
        raise InvalidInput("prompt", f"prompt must have shape [N], got {list(raw.shape)}")
    if not 1 <= raw.shape[0] <= c.MAX_PROMPTS:
        raise InvalidInput("prompt", f"prompt must hold 1 to {c.MAX_PROMPTS} prompts, got {raw.shape[0]}")
    return tuple(decode_texts(raw, "prompt"))


def decode_texts(raw: np.ndarray, field: str) -> list[str]:
    """A BYTES tensor of UTF-8 strings → list of str; rejects items that are not UTF-8 or are blank."""
    texts = []
    for i, item in enumerate(raw.reshape(-1)):
        try:
            text = bytes(item).decode("utf-8") if isinstance(item, (bytes, np.bytes_)) else str(item)
        except UnicodeDecodeError as exc:
            raise InvalidInput(field, f"{field}[{i}] is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
        if not text.strip():
            raise InvalidInput(field, f"{field}[{i}] must be non-empty after stripping whitespace, got {text!r}")
        texts.append(text)
    return texts


def _seeds(raw: np.ndarray | None, count: int) -> tuple[int, ...]:
    if raw is None:
        return tuple(secrets.randbelow(c.MAX_SEED + 1) for _ in range(count))
    if raw.dtype != np.int64:
        raise InvalidInput("seed", f"seed must be INT64, got {raw.dtype}")
    values = raw.reshape(-1)
    if values.size != count:
        raise InvalidInput("seed", f"seed must hold one value per prompt ({count}), got {values.size}")
    for i, s in enumerate(values.tolist()):
        _in_range(f"seed[{i}]", s, 0, c.MAX_SEED)
    return tuple(values.tolist())


def _image_encoding(raw: np.ndarray | None) -> str:
    if raw is None:
        return c.DEFAULT_IMAGE_ENCODING
    if raw.dtype != np.object_ and raw.dtype.kind not in "SU":
        raise InvalidInput("image_encoding", f"image_encoding must be BYTES, got {raw.dtype}")
    if raw.size != 1:
        raise InvalidInput("image_encoding", f"image_encoding must hold exactly 1 value, got shape {list(raw.shape)}")
    item = raw.reshape(-1)[0]
    value = bytes(item).decode("utf-8", "replace") if isinstance(item, (bytes, np.bytes_)) else str(item)
    if value not in c.IMAGE_ENCODINGS:
        raise InvalidInput("image_encoding", f"image_encoding must be one of {', '.join(c.IMAGE_ENCODINGS)}, "
                           f"got {value!r}")
    return value


def check_requested_outputs(encoding: str, requested: Collection[str]) -> None:
    """Reject a request that names an image output its `image_encoding` does not fill (`requested`: the outputs
    the client named; empty when it named none)."""
    chosen = c.IMAGE_OUTPUTS[encoding]
    others = sorted(set(requested) & set(c.IMAGE_OUTPUTS.values()) - {chosen})
    if others:
        raise InvalidInput("image_encoding", f"image_encoding is '{encoding}', which returns {chosen}, but the "
                           f"request asks for output {others[0]}")


def parse_bls_inputs(inputs: Mapping[str, np.ndarray | None], variant: str,
                     t5_token_count: Callable[[str], int],
                     max_pixels: int = c.DEFAULT_MAX_PIXELS_PER_REQUEST,
                     requested_outputs: Collection[str] = ()) -> GenerationRequest:
    """Check every `bls` input against docs/bls.md and fill the defaults; raises `InvalidInput` on the first problem.
    A request over the memory budget (prompts x height x width > `max_pixels`) is rejected before any work, and so is
    one whose `requested_outputs` (the outputs the client named) ask for images its image_encoding does not fill."""
    prompts = _prompts(inputs.get("prompt"))
    steps = _in_range("num_inference_steps", _scalar(inputs, "num_inference_steps", c.DEFAULT_STEPS),
                      c.MIN_STEPS, c.MAX_STEPS)
    guidance = _scalar(inputs, "guidance_scale", c.DEFAULT_GUIDANCE[variant])
    if not math.isfinite(guidance) or not c.MIN_GUIDANCE <= guidance <= c.MAX_GUIDANCE:
        raise InvalidInput("guidance_scale", f"guidance_scale must be a finite number in "
                           f"[{c.MIN_GUIDANCE:g}, {c.MAX_GUIDANCE:g}], got {guidance}")
    sizes = {}
    for name in ("height", "width"):
        value = _scalar(inputs, name, c.DEFAULT_SIZE)
        if value % c.SIZE_MULTIPLE or not c.MIN_SIZE <= value <= c.MAX_SIZE:
            raise InvalidInput(name, f"{name} must be a multiple of {c.SIZE_MULTIPLE} in "
                               f"[{c.MIN_SIZE}, {c.MAX_SIZE}], got {value}")
        sizes[name] = value
    seq_len = _in_range("max_sequence_length",
                        _scalar(inputs, "max_sequence_length", c.DEFAULT_SEQUENCE_LENGTH[variant]),
                        c.MIN_SEQUENCE_LENGTH, c.MAX_SEQUENCE_LENGTH)
    seeds = _seeds(inputs.get("seed"), len(prompts))
    encoding = _image_encoding(inputs.get("image_encoding"))
    check_requested_outputs(encoding, requested_outputs)
    pixels = len(prompts) * sizes["height"] * sizes["width"]
    if pixels > max_pixels:
        raise InvalidInput("prompt", f"prompt, height, width: {len(prompts)} prompts x {sizes['height']}x"
                           f"{sizes['width']} = {pixels:,} pixels exceeds this server's memory budget of "
                           f"{max_pixels:,} pixels per request (bls parameter max_pixels_per_request or "
                           f"{c.ENV_MAX_PIXELS}): send fewer prompts or a smaller size")
    for i, prompt in enumerate(prompts):
        tokens = t5_token_count(prompt)
        if tokens > seq_len:
            raise InvalidInput("prompt", f"prompt[{i}] is {tokens} T5 tokens long but max_sequence_length is "
                               f"{seq_len}: shorten the prompt or raise max_sequence_length (at most "
                               f"{c.MAX_SEQUENCE_LENGTH})")
    return GenerationRequest(prompts=prompts, seeds=seeds, num_inference_steps=int(steps),
                             guidance_scale=float(guidance), height=int(sizes["height"]), width=int(sizes["width"]),
                             max_sequence_length=int(seq_len), image_encoding=encoding)
