"""How flux_async's request fields map onto any KServe v2 text-to-image model, and how its images are read.

A `Contract` names, per request field (prompt, seed, steps, …), the model input that carries it — its name, datatype
and shape convention — or leaves it out (the server fixes it); it names the output holding the images and how to read
them (a tensor's datatype, layout and value range, or encoded PNG/JPEG bytes) and, optionally, the seeds output.
`BLS` is today's `bls` (docs/bls.md); the scenario's `target.contract` section describes any other model, and
`check_contract` holds a contract against the model's metadata before any load is sent. Decoding is in
flux_async/targets/image_decoding.py.

Shape conventions, with B the prompts in the request: "[B]" / "[B,1]" one value per prompt (a setting such as steps
is repeated B times), "[1]" / "[1,1]" one value per request (then a per-prompt field allows one prompt per request).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from flux_async import contract as limits
from flux_async.scenario.reader import Reader, boolean, integer

if TYPE_CHECKING:
    from flux_async.scenario.workload import Job

FIELDS = ("prompt", "negative_prompt", "seed", "steps", "guidance", "height", "width", "max_sequence_length")
PER_PROMPT = ("prompt", "negative_prompt", "seed")  # one value per prompt; the others are one per request
SHAPES = ("[B]", "[B,1]", "[1]", "[1,1]")
INPUT_DATATYPES = {"BYTES": np.object_, "INT32": np.int32, "INT64": np.int64, "UINT32": np.uint32,
                   "UINT64": np.uint64, "FP16": np.float16, "FP32": np.float32, "FP64": np.float64}
TENSOR_DATATYPES = {"FP32": np.float32, "FP16": np.float16, "FP64": np.float64, "UINT8": np.uint8,
                    "INT32": np.int32, "INT64": np.int64, "UINT16": np.uint16}
LAYOUTS = ("NCHW", "NHWC", "CHW", "HWC")
RANGES = {"0..1": (0.0, 1.0), "-1..1": (-1.0, 2.0), "0..255": (0.0, 255.0)}  # (offset subtracted, divisor)
FORMATS = ("tensor", "png", "base64")  # png: PNG or JPEG bytes; base64: base64 text of PNG or JPEG bytes


@dataclass(frozen=True)
class InputMap:
    """The model input carrying one field: its name, datatype and shape convention."""

    name: str
    datatype: str
    shape: str = "[B]"

    @property
    def per_request(self) -> bool:
        return self.shape in ("[1]", "[1,1]")

    def array(self, values: Sequence, count: int) -> np.ndarray:
        """The tensor for `values` (one per prompt, or one for the request) in a request of `count` prompts."""
        values = list(values) * (count if len(values) == 1 and not self.per_request else 1)
        dtype = INPUT_DATATYPES[self.datatype]
        if dtype is np.object_:
            array = np.array([v.encode("utf-8") if isinstance(v, str) else v for v in values], dtype=np.object_)
        else:
            array = np.array(values, dtype=dtype)
        return array.reshape(-1, 1) if self.shape.endswith(",1]") else array


@dataclass(frozen=True)
class ImageOutput:
    """The output holding the images and how to read it: a tensor (datatype, layout, value range), or PNG/JPEG files
    (raw bytes, or base64 text) one per element of a BYTES or UINT8 tensor."""

    name: str
    datatype: str = "FP32"
    format: str = "tensor"
    layout: str = "NCHW"
    value_range: str = "0..1"


@dataclass(frozen=True)
class Contract:
    """Which inputs carry which fields, the most prompts one request may carry, and how the outputs are read.

    `deterministic`: the model takes no seed but makes the same image for the same prompt (a seed fixed in its
    config), so its images can still be checked against single runs."""

    inputs: dict[str, InputMap]
    images: ImageOutput
    seeds: str | None = None
    max_prompts: int = 8
    deterministic: bool = False
    constants: tuple[tuple[InputMap, Any], ...] = ()  # inputs sent with a fixed value (e.g. an encoding)

    @property
    def unverifiable(self) -> str | None:
        """Why this model's images cannot be compared with single runs, or None when they can."""
        if "seed" in self.inputs or self.deterministic:
            return None
        return ("the model takes no seed and returns none, so a prompt's image cannot be reproduced for comparison "
                "(if the server fixes its seed, set target.contract.deterministic: true)")

    def arrays(self, job: Job) -> dict[str, np.ndarray]:
        """The request's tensors by input name: the fields the job sets, plus the constants."""
        count = len(job.prompts)
        negative = None if job.negative_prompt is None else (job.negative_prompt,)
        values: dict[str, Sequence | None] = {
            "prompt": job.prompts, "negative_prompt": negative, "seed": job.seeds, "steps": _one(job.steps),
            "guidance": _one(job.guidance), "height": _one(job.height), "width": _one(job.width),
            "max_sequence_length": _one(job.max_sequence_length)}
        arrays = {}
        for name, mapped in self.inputs.items():
            given = values.get(name)
            if given is not None:
                arrays[mapped.name] = mapped.array(given, count)
        for mapped, value in self.constants:
            arrays[mapped.name] = mapped.array([value], count)
        if job.extra:  # a trace line's inputs by tensor name: a field's or a constant's input takes its value
            known = {m.name: m for m in self.inputs.values()} | {m.name: m for m, _ in self.constants}
            for name, value in job.extra.items():
                carrier = known.get(name)
                if carrier is not None:  # other names are not sent: the model would refuse an unknown input
                    arrays[name] = carrier.array(value if isinstance(value, list) else [value], count)
        return arrays

    def output_names(self) -> list[str]:
        return [self.images.name] + ([self.seeds] if self.seeds else [])


def _one(value) -> tuple | None:
    return None if value is None else (value,)


BLS = Contract(
    inputs={"prompt": InputMap("prompt", "BYTES", "[B]"), "seed": InputMap("seed", "INT64", "[B]"),
            "steps": InputMap("num_inference_steps", "INT32", "[1]"),
            "guidance": InputMap("guidance_scale", "FP32", "[1]"), "height": InputMap("height", "INT32", "[1]"),
            "width": InputMap("width", "INT32", "[1]"),
            "max_sequence_length": InputMap("max_sequence_length", "INT32", "[1]")},
    images=ImageOutput("images", "FP32", "tensor", "NCHW", "0..1"), seeds="seeds", max_prompts=8)


# ---- the model as the server describes it ------------------------------------------------------------------------
@dataclass(frozen=True)
class TensorInfo:
    """One input or output of a served model: datatype as KServe names it (BYTES, FP32, …) and dims without the
    batch dimension."""

    name: str
    datatype: str
    dims: tuple[int, ...]
    optional: bool = False


@dataclass
class ModelInfo:
    """What Triton says about a model: its metadata and config (`/v2/models/NAME`, `/v2/models/NAME/config`)."""

    name: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    max_batch_size: int = 0
    decoupled: bool = False
    parameters: dict[str, str] = field(default_factory=dict)
    platform: str = ""

    def input(self, name: str) -> TensorInfo | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorInfo | None:
        return next((t for t in self.outputs if t.name == name), None)

    def full_dims(self, tensor: TensorInfo) -> tuple[int, ...]:
        """The shape a request sends: the batch dimension first when the model batches."""
        return ((-1,) if self.max_batch_size > 0 else ()) + tensor.dims


def _shape_fits(shape: str, dims: tuple[int, ...], max_prompts: int) -> bool:
    """Whether a tensor of `shape` (B up to `max_prompts`) fits the model's dims (-1: any size)."""
    wanted = {"[B]": (max_prompts,), "[B,1]": (max_prompts, 1), "[1]": (1,), "[1,1]": (1, 1)}[shape]
    return len(wanted) == len(dims) and all(d in (w, -1) for w, d in zip(wanted, dims))


def check_contract(contract: Contract, info: ModelInfo, protocol: str) -> list[str]:
    """Every way `contract` does not fit the served model, each naming the tensor (empty: it fits)."""
    problems = []
    sent = {m.name: f"field {f}" for f, m in contract.inputs.items()}
    sent.update({m.name: "a constant" for m, _ in contract.constants})
    for mapped, what in [(m, f"field {f}") for f, m in contract.inputs.items()] + \
                        [(m, "a constant") for m, _ in contract.constants]:
        tensor = info.input(mapped.name)
        if tensor is None:
            problems.append(f"input {mapped.name!r} ({what}): model {info.name!r} has no such input; its inputs: "
                            f"{', '.join(t.name for t in info.inputs)}")
            continue
        if tensor.datatype != mapped.datatype:
            problems.append(f"input {mapped.name!r} ({what}): the contract says {mapped.datatype}, the model "
                            f"takes {tensor.datatype}")
        dims = info.full_dims(tensor)
        if not _shape_fits(mapped.shape, dims, contract.max_prompts):
            problems.append(f"input {mapped.name!r} ({what}): shape {mapped.shape} does not fit the model's "
                            f"{list(dims)} (max_batch_size {info.max_batch_size})")
    for tensor in info.inputs:
        if not tensor.optional and tensor.name not in sent:
            problems.append(f"input {tensor.name!r}: the model requires it but the contract sends nothing for it "
                            f"(map a field to it, or add it to target.contract.constants)")
    output = info.output(contract.images.name)
    if output is None:
        problems.append(f"output {contract.images.name!r} (images): model {info.name!r} has no such output; its "
                        f"outputs: {', '.join(t.name for t in info.outputs)}")
    else:
        if output.datatype != contract.images.datatype:
            problems.append(f"output {output.name!r} (images): the contract says {contract.images.datatype}, the "
                            f"model returns {output.datatype}")
        dims = info.full_dims(output)
        if contract.images.format == "tensor" and len(dims) != len(contract.images.layout):
            problems.append(f"output {output.name!r} (images): layout {contract.images.layout} needs "
                            f"{len(contract.images.layout)} dimensions, the model's has {list(dims)}")
    if contract.seeds and info.output(contract.seeds) is None:
        problems.append(f"output {contract.seeds!r} (seeds): model {info.name!r} has no such output")
    if info.decoupled != (protocol == "grpc-stream"):
        problems.append(f"model {info.name!r} is {'' if info.decoupled else 'not '}decoupled: use protocol "
                        f"{'grpc-stream' if info.decoupled else 'grpc or http'}, not {protocol}")
    if info.max_batch_size > 0 and contract.max_prompts > info.max_batch_size:
        problems.append(f"max_prompts {contract.max_prompts} is over the model's max_batch_size "
                        f"{info.max_batch_size}")
    return problems


# ---- target.contract in a scenario -------------------------------------------------------------------------------
def parse_contract(r: Reader, data: Any, path: str) -> Contract | None:
    """`target.contract` → a `Contract` (None when the section is absent: the `bls` contract)."""
    if data is None:
        return None
    data = r.mapping(data, path, ("inputs", "outputs", "constants", "max_prompts", "deterministic"),
                     ("inputs", "outputs"))
    inputs: dict[str, InputMap] = {}
    raw_inputs = r.mapping(data.get("inputs") or {}, f"{path}.inputs", FIELDS, ("prompt",))
    for name, value in raw_inputs.items():
        if name in FIELDS and value is not None:  # null: not sent (the server fixes it)
            mapped = _input_map(r, value, f"{path}.inputs.{name}")
            if mapped is not None:
                inputs[name] = mapped
    constants = []
    raw_constants = data.get("constants") or []
    if not isinstance(raw_constants, list):
        r.problem(f"{path}.constants", "must be a list of {name, datatype, shape, value}")
        raw_constants = []
    for index, item in enumerate(raw_constants):
        where = f"{path}.constants[{index}]"
        if not isinstance(item, dict) or "value" not in item:
            r.problem(where, "must be a mapping with name, datatype, shape and value")
            continue
        mapped = _input_map(r, {k: v for k, v in item.items() if k != "value"}, where)
        if mapped is not None:
            constants.append((mapped, item["value"]))
    outputs = r.mapping(data.get("outputs") or {}, f"{path}.outputs", ("images", "seeds"), ("images",))
    images = _image_output(r, outputs.get("images"), f"{path}.outputs.images")
    seeds = r.get(outputs, "seeds", f"{path}.outputs", str, None, bool, "must be an output name (or null)")
    per_request = any(m.per_request for f, m in inputs.items() if f in PER_PROMPT)
    max_prompts = r.get(data, "max_prompts", path, integer, 1 if per_request else limits.MAX_PROMPTS,
                        lambda v: 1 <= v <= limits.MAX_PROMPTS, f"must be an integer in [1, {limits.MAX_PROMPTS}]")
    if per_request and max_prompts > 1:
        r.problem(f"{path}.max_prompts", "must be 1: a per-prompt input has a per-request shape ([1] or [1,1])")
    deterministic = r.get(data, "deterministic", path, boolean, False, expect="must be true or false")
    if images is None or r.problems:
        return None
    return Contract(inputs, images, seeds, max_prompts, deterministic, tuple(constants))


def _input_map(r: Reader, value: Any, path: str) -> InputMap | None:
    if isinstance(value, str):
        value = {"name": value}
    data = r.mapping(value, path, ("name", "datatype", "shape"), ("name", "datatype"))
    name = r.get(data, "name", path, str, None, bool, "must be a tensor name")
    datatype = r.choice(data, "datatype", path, tuple(INPUT_DATATYPES), "BYTES")
    shape = r.choice(data, "shape", path, SHAPES, "[B]")
    return InputMap(name, datatype, shape) if name else None


def _image_output(r: Reader, value: Any, path: str) -> ImageOutput | None:
    if value is None:
        return None
    data = r.mapping(value, path, ("name", "datatype", "format", "layout", "range"), ("name",))
    name = r.get(data, "name", path, str, None, bool, "must be a tensor name")
    image_format = r.choice(data, "format", path, FORMATS, "tensor")
    datatypes = tuple(TENSOR_DATATYPES) if image_format == "tensor" else ("BYTES", "UINT8")
    datatype = r.choice(data, "datatype", path, datatypes, "FP32" if image_format == "tensor" else "BYTES")
    layout = r.choice(data, "layout", path, LAYOUTS, "NCHW")
    value_range = r.choice(data, "range", path, tuple(RANGES), "0..255" if datatype == "UINT8" else "0..1")
    if image_format != "tensor" and ("layout" in data or "range" in data):
        r.problem(path, f"layout and range describe tensors; format {image_format} carries encoded files")
    return ImageOutput(name, datatype, image_format, layout, value_range) if name else None


def contract_yaml(model_contract: Contract) -> dict[str, Any]:
    """`model_contract` as the `target.contract` mapping that `parse_contract` reads back."""
    images = model_contract.images
    image = {"name": images.name, "datatype": images.datatype, "format": images.format}
    if images.format == "tensor":
        image.update(layout=images.layout, range=images.value_range)
    data: dict[str, Any] = {
        "inputs": {f: {"name": m.name, "datatype": m.datatype, "shape": m.shape}
                   for f, m in model_contract.inputs.items()},
        "outputs": {"images": image, "seeds": model_contract.seeds},
        "max_prompts": model_contract.max_prompts}
    if model_contract.deterministic:
        data["deterministic"] = True
    if model_contract.constants:
        data["constants"] = [{"name": m.name, "datatype": m.datatype, "shape": m.shape, "value": v}
                             for m, v in model_contract.constants]
    return data
