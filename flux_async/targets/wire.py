"""Requests and responses on the wire, without per-request work the workload does not need.

A run repeats a few distinct requests many times (prompts keep their seeds), so each distinct request is encoded
once — a serialized gRPC `ModelInferRequest`, or a KServe HTTP body with binary tensors — and reused. Responses
are decoded only as far as needed: the image count, or the images themselves when they are to be verified.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import numpy as np

from flux_async.scenario.model_contract import BLS, Contract
from flux_async.scenario.workload import Job
from flux_async.targets.bls_inputs import datatype
from flux_async.targets.image_decoding import UndecodableImages, decode_images, image_count, tensor_from_raw

_NUMPY = {"FP32": np.float32, "INT64": np.int64, "INT32": np.int32, "FP16": np.float16}
Decoded = tuple[int, "np.ndarray | None", "tuple[int, ...] | None"]  # (image count, images, seeds)
VIEW_AT_BYTES = 2**16  # smaller gRPC responses go through protobuf's C parser: copying them costs less than our scan


class EncodedRequests:
    """An LRU cache of encoded requests, keyed by what the request contains."""

    def __init__(self, encode, size: int = 4096):
        self.encode, self.size = encode, size
        self._cache: OrderedDict[tuple, Any] = OrderedDict()

    def get(self, job: Job):
        key = (job.prompts, job.seeds, job.steps, job.guidance, job.height, job.width, job.max_sequence_length,
               job.negative_prompt, job.extra_key)
        encoded = self._cache.get(key)
        if encoded is None:
            encoded = self._cache[key] = self.encode(job)
            if len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return encoded


def grpc_request(model: str, job: Job, contract: Contract = BLS) -> bytes:
    """A serialized ModelInferRequest for `job` (BYTES tensors length-prefixed, as Triton expects); another model's
    contract also names the outputs it wants (`bls` gets every output, as it always has)."""
    from tritonclient.grpc import service_pb2
    from tritonclient.utils import serialize_byte_tensor

    request = service_pb2.ModelInferRequest(model_name=model)
    for name, value in contract.arrays(job).items():
        tensor = request.inputs.add(name=name, datatype=datatype(value))
        tensor.shape.extend(value.shape)
        raw = serialize_byte_tensor(value).item() if value.dtype == np.object_ else value.tobytes()
        request.raw_input_contents.append(raw)
    if contract is not BLS:
        for name in contract.output_names():
            request.outputs.add(name=name)
    return request.SerializeToString()


def grpc_images(response, keep_pixels: bool, contract: Contract = BLS) -> Decoded:
    """(image count, images, seeds) of a ModelInferResponse, given as the message or as its serialized bytes; images
    and seeds only when `keep_pixels`. From bytes, the tensors are viewed in place: no copy of the images."""
    if isinstance(response, (bytes, bytearray, memoryview)) and len(response) >= VIEW_AT_BYTES:
        outputs, raws = _response_fields(response)
    else:
        if isinstance(response, (bytes, bytearray, memoryview)):
            from tritonclient.grpc import service_pb2

            response = service_pb2.ModelInferResponse.FromString(response)
        outputs, raws = response.outputs, response.raw_output_contents
    count, pixels, seeds, found = 0, None, None, False
    images = contract.images
    for index, output in enumerate(outputs):
        if output.name == images.name:
            found, count = True, image_count(images, output.shape)
            if keep_pixels:
                pixels = decode_images(images, tensor_from_raw(images, raws[index], output.shape))
        elif output.name == contract.seeds and keep_pixels:
            seeds = _seeds(raws[index], output.datatype, output.name)
    if not found and contract is not BLS:
        raise UndecodableImages(f"the response has no output {images.name!r}")
    return count, pixels, seeds


def _seeds(raw, name_of_datatype: str, name: str) -> tuple[int, ...]:
    if name_of_datatype not in ("INT64", "INT32", "UINT64", "UINT32"):
        raise UndecodableImages(f"output {name}: seeds must be integers, got {name_of_datatype}")
    dtype = {"INT64": np.int64, "INT32": np.int32, "UINT64": np.uint64, "UINT32": np.uint32}[name_of_datatype]
    return tuple(int(s) for s in np.frombuffer(raw, dtype=dtype))


def _varint(view: memoryview, position: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = view[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, position
        shift += 7


def _response_fields(data) -> tuple[list, list[memoryview]]:
    """A serialized ModelInferResponse's `outputs` (field 5, parsed) and `raw_output_contents` (field 6, as views
    into `data`); its other fields are skipped. Protobuf's own parser would copy every tensor."""
    from tritonclient.grpc import service_pb2

    view, position, outputs, raws = memoryview(data), 0, [], []
    while position < len(view):
        key, position = _varint(view, position)
        field, kind = key >> 3, key & 7
        if kind == 2:  # length-delimited: strings, messages, bytes
            length, position = _varint(view, position)
            if field == 5:
                outputs.append(service_pb2.ModelInferResponse.InferOutputTensor.FromString(
                    bytes(view[position:position + length])))
            elif field == 6:
                raws.append(view[position:position + length])
            position += length
        elif kind == 0:
            _, position = _varint(view, position)
        elif kind in (1, 5):
            position += 8 if kind == 1 else 4
        else:
            raise ValueError(f"ModelInferResponse: unexpected wire type {kind} for field {field}")
    return outputs, raws


def http_request(job: Job, contract: Contract = BLS) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of a KServe v2 request with binary tensors, asking for binary outputs."""
    import tritonclient.http as httpclient

    inputs = []
    for name, value in contract.arrays(job).items():
        tensor = httpclient.InferInput(name, list(value.shape), datatype(value))
        tensor.set_data_from_numpy(value, binary_data=True)
        inputs.append(tensor)
    outputs = [httpclient.InferRequestedOutput(name, binary_data=True) for name in contract.output_names()]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)
    return body, headers


def http_images(payload: bytes, header_length: int | None, keep_pixels: bool, contract: Contract = BLS) -> Decoded:
    """(image count, images, seeds) of a KServe v2 response; reads only its JSON header unless `keep_pixels`, and
    then views the binary outputs in place (no copy of the images)."""
    header = json.loads(payload[:header_length] if header_length else payload)
    outputs = {output["name"]: output for output in header.get("outputs", [])}
    images = outputs.get(contract.images.name)
    if images is None and contract is not BLS:
        raise UndecodableImages(f"the response has no output {contract.images.name!r}")
    count = image_count(contract.images, images["shape"]) if images else 0
    if not keep_pixels:
        return count, None, None
    pixels = seeds = None
    offset, body = header_length or len(payload), memoryview(payload)
    for output in header.get("outputs", []):  # binary outputs follow the header in the header's order
        size = output.get("parameters", {}).get("binary_data_size")
        raw = body[offset:offset + size] if size is not None else None
        if output["name"] == contract.images.name:
            array = tensor_from_raw(contract.images, raw, output["shape"]) if raw is not None else \
                np.asarray(output.get("data", []), dtype=_NUMPY.get(output["datatype"], object)).reshape(
                    output["shape"])
            pixels = decode_images(contract.images, array)
        elif output["name"] == contract.seeds:
            seeds = _seeds(raw, output["datatype"], output["name"]) if raw is not None else \
                tuple(int(s) for s in output.get("data", []))
        offset += size or 0
    return count, pixels, seeds


def unreadable(exc: Exception) -> str:
    """The `bad_response` message of a response that could not be read: an undecodable image says what it is as it
    is; anything else (a malformed message) with its type."""
    return str(exc) if isinstance(exc, UndecodableImages) else f"{type(exc).__name__}: {exc}"
