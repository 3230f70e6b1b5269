"""Infer a `Contract` from what Triton says about a model: which input carries the prompt, the seed, the steps, …
(by name and type, case-insensitive, with the common spellings), which output holds the images and how to read it.

What cannot be told from the metadata is listed in `Inference.ambiguities` for the user to settle in the YAML.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from flux_async import contract as limits
from flux_async.scenario.model_contract import (
    INPUT_DATATYPES,
    TENSOR_DATATYPES,
    Contract,
    ImageOutput,
    InputMap,
    ModelInfo,
    TensorInfo,
)

# the spellings seen in deployments (Triton's tutorials, community FLUX repositories, bls), normalized
SPELLINGS = {
    "prompt": ("prompt", "prompts", "text", "texts", "textinput", "inputtext", "caption", "positiveprompt",
               "prompttext"),
    "negative_prompt": ("negativeprompt", "negprompt", "negative", "negativetext", "negativeprompts"),
    "seed": ("seed", "seeds", "randomseed", "noiseseed", "rngseed", "generatorseed"),
    "steps": ("steps", "numinferencesteps", "numsteps", "step", "nsteps", "inferencesteps", "samplingsteps"),
    "guidance": ("guidance", "guidancescale", "cfg", "cfgscale", "scale"),
    "height": ("height", "imageheight", "h"),
    "width": ("width", "imagewidth", "w"),
    "max_sequence_length": ("maxsequencelength", "maxseqlen", "maxlength"),
}
IMAGE_OUTPUTS = ("images", "image", "generatedimage", "generatedimages", "outputimage", "outputimages", "output",
                 "outputs", "pixelvalues", "samples", "img", "imgs", "result")
SEED_OUTPUTS = ("seeds", "seed", "usedseeds")
_NUMERIC = {"seed": ("INT64", "INT32", "UINT64", "UINT32"), "steps": ("INT32", "INT64", "UINT32", "UINT64"),
            "height": ("INT32", "INT64", "UINT32", "UINT64"), "width": ("INT32", "INT64", "UINT32", "UINT64"),
            "max_sequence_length": ("INT32", "INT64"), "guidance": ("FP32", "FP16", "FP64")}


def normalized(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass
class Inference:
    """The inferred contract (None: not text-to-image, `reason` says why), and what the user should know."""

    contract: Contract | None
    reason: str = ""
    fields: dict[str, str] = field(default_factory=dict)  # field → how it is carried, for the console
    server_fixed: dict[str, str] = field(default_factory=dict)  # field → the config parameter fixing it
    ambiguities: list[str] = field(default_factory=list)
    range_known: bool = True  # False: a float tensor whose value range the metadata does not tell

    @property
    def text_to_image(self) -> bool:
        return self.contract is not None


def infer_contract(info: ModelInfo) -> Inference:
    """The contract `info` most likely follows, with every guess it had to make listed."""
    ambiguities: list[str] = []
    inputs: dict[str, InputMap] = {}
    for name in SPELLINGS:
        tensor = _input_for(name, info, ambiguities)
        if tensor is not None:
            inputs[name] = InputMap(tensor.name, tensor.datatype, _shape(info.full_dims(tensor)))
    images = _image_output(info)
    if "prompt" not in inputs or images is None:
        missing = []
        if "prompt" not in inputs:
            missing.append("no BYTES input that carries a prompt (" + ", ".join(SPELLINGS["prompt"][:4]) + ", …)")
        if images is None:
            missing.append("no output that holds images (an FP32/FP16/UINT8 tensor of 3 or 4 dimensions, or "
                           "BYTES)")
        return Inference(None, f"model {info.name!r} does not look like text-to-image: " + "; ".join(missing))
    image_output, range_known = _decoding(images, info, ambiguities)
    seeds = next((t.name for t in info.outputs if normalized(t.name) in SEED_OUTPUTS and t.datatype in
                  _NUMERIC["seed"]), None)
    server_fixed = {f: key for f, names in SPELLINGS.items() for key in sorted(info.parameters)
                    if f not in inputs and normalized(key) in names}
    prompt = inputs["prompt"]
    max_prompts = 1 if prompt.per_request else min(info.max_batch_size or limits.MAX_PROMPTS, limits.MAX_PROMPTS)
    if not prompt.per_request and info.max_batch_size == 0:
        ambiguities.append(f"input {prompt.name!r} takes any number of prompts: max_prompts is set to "
                           f"{max_prompts}; lower it if the model takes fewer")
    for tensor in info.inputs:
        used = {m.name for m in inputs.values()}
        if not tensor.optional and tensor.name not in used:
            ambiguities.append(f"input {tensor.name!r} ({tensor.datatype}) is required and carries nothing "
                               f"flux_async knows: add it to target.contract.constants with a value, or map it")
    deterministic = "seed" not in inputs and "seed" in server_fixed
    inferred = Contract(inputs, image_output, seeds, max_prompts, deterministic)
    fields = {f: f"input {m.name} {m.datatype} {m.shape}" for f, m in inputs.items()}
    for f, key in server_fixed.items():
        fields[f] = f"fixed by the server (config parameter {key!r} = {info.parameters[key]!r})"
    return Inference(inferred, fields=fields, server_fixed=server_fixed, ambiguities=ambiguities,
                     range_known=range_known)


def _input_for(name: str, info: ModelInfo, ambiguities: list[str]) -> TensorInfo | None:
    """The input carrying field `name`: by spelling and a datatype that fits it."""
    wanted = ("BYTES",) if name in ("prompt", "negative_prompt") else _NUMERIC[name]
    matches = [t for t in info.inputs if normalized(t.name) in SPELLINGS[name] and t.datatype in INPUT_DATATYPES]
    fitting = [t for t in matches if t.datatype in wanted]
    for tensor in matches:
        if tensor not in fitting:
            ambiguities.append(f"input {tensor.name!r} is spelled like {name} but is {tensor.datatype}; it is not "
                               f"mapped (map it in target.contract.inputs if it is)")
    if name == "prompt" and not fitting:  # a model with one BYTES input: that is the prompt
        text = [t for t in info.inputs if t.datatype == "BYTES"]
        if len(text) == 1:
            ambiguities.append(f"input {text[0].name!r} is taken as the prompt (the model's only BYTES input)")
            return text[0]
    return fitting[0] if fitting else None


def _shape(dims: tuple[int, ...]) -> str:
    batched = dims[0] == -1 if dims else False
    if len(dims) >= 2:
        return "[B,1]" if batched else "[1,1]"
    return "[B]" if batched else "[1]"


def _image_output(info: ModelInfo) -> TensorInfo | None:
    """The output holding images: named like images and of an image's type, or else the one tensor with a dimension
    of 3 channels (embeddings and latents are not images)."""
    def tensor_like(t: TensorInfo) -> bool:
        return t.datatype in TENSOR_DATATYPES and t.datatype not in ("INT32", "INT64") and \
            len(info.full_dims(t)) in (3, 4)

    named = [t for t in info.outputs if normalized(t.name) in IMAGE_OUTPUTS and (t.datatype == "BYTES" or
                                                                                 tensor_like(t))]
    if named:
        return named[0]
    channels = [t for t in info.outputs if tensor_like(t) and 3 in (info.full_dims(t)[-1], info.full_dims(t)[-3])]
    return channels[0] if len(channels) == 1 else None


def _decoding(tensor: TensorInfo, info: ModelInfo, ambiguities: list[str]) -> tuple[ImageOutput, bool]:
    """How to read the image output, and whether its value range is known from the metadata."""
    if tensor.datatype == "BYTES":
        ambiguities.append(f"output {tensor.name!r} is BYTES: read as PNG/JPEG files, one per element (if they "
                           "are base64 text, set format: base64)")
        return ImageOutput(tensor.name, "BYTES", "png"), True
    dims = info.full_dims(tensor)
    batched = len(dims) == 4
    if dims[-1] == 3:
        layout = "NHWC" if batched else "HWC"
    elif dims[-3] == 3:
        layout = "NCHW" if batched else "CHW"
    else:
        layout = ("NHWC" if batched else "HWC") if tensor.datatype == "UINT8" else ("NCHW" if batched else "CHW")
        ambiguities.append(f"output {tensor.name!r} {list(dims)}: no dimension of 3 channels, layout {layout} "
                           "assumed")
    if tensor.datatype == "UINT8":
        return ImageOutput(tensor.name, "UINT8", "tensor", layout, "0..255"), True
    ambiguities.append(f"output {tensor.name!r} is {tensor.datatype}: its values may be in 0..1, -1..1 or 0..255 "
                       "(Triton's Stable Diffusion BLS tutorial returns 0..255 as FP32)")
    return ImageOutput(tensor.name, tensor.datatype, "tensor", layout, "0..1"), False


def value_range(low: float, high: float) -> str:
    """The value range a sample image's minimum and maximum point to."""
    if high > 1.5:
        return "0..255"
    return "-1..1" if low < -0.05 else "0..1"

