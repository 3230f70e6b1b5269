"""Reading a response's images as its contract says: a tensor (datatype, layout, value range) or encoded files.

Every decoded image is [3, H, W] float32 in [0, 1], what the verifier compares. Each error names the output (and the
element), so a corrupt PNG or a wrong byte count shows in `errors_by_kind` as the server's fault, never a crash.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np

from flux_async.measure.images import decode_image
from flux_async.scenario.model_contract import RANGES, TENSOR_DATATYPES, ImageOutput


class UndecodableImages(ValueError):
    """A response whose images do not decode as the contract says; the message names the output."""


def image_count(output: ImageOutput, shape: Sequence[int]) -> int:
    """How many images a response of this output's `shape` holds (without reading its data)."""
    if output.format != "tensor":
        if output.datatype == "UINT8":  # one encoded file per row, or the whole tensor for a single one
            return int(shape[0]) if len(shape) > 1 else 1
        return int(np.prod(shape)) if shape else 0
    return int(shape[0]) if output.layout.startswith("N") and shape else 1


def tensor_from_raw(output: ImageOutput, raw, shape: Sequence[int]) -> np.ndarray:
    """The output's array from its raw bytes (BYTES: Triton's length-prefixed serialization); checks the size."""
    shape = tuple(int(d) for d in shape)
    if output.datatype == "BYTES":
        from tritonclient.utils import deserialize_bytes_tensor

        try:
            array = deserialize_bytes_tensor(bytes(raw))
        except Exception as exc:
            raise UndecodableImages(f"output {output.name}: not a BYTES tensor ({type(exc).__name__}: {exc})") from None
        return array.reshape(shape) if array.size == int(np.prod(shape)) else array
    dtype = np.dtype(TENSOR_DATATYPES[output.datatype])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise UndecodableImages(f"output {output.name}: {len(raw)} bytes for shape {list(shape)} of "
                                f"{output.datatype}, expected {expected}")
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def decode_images(output: ImageOutput, array: np.ndarray) -> np.ndarray:
    """The images of a response tensor as [N, 3, H, W] float32 in [0, 1]."""
    if output.format != "tensor":
        return np.stack([_decode_file(output, item, i) for i, item in enumerate(_files(output, array))])
    images = array if output.layout.startswith("N") else array[np.newaxis]
    if images.ndim != 4:
        raise UndecodableImages(f"output {output.name}: layout {output.layout} needs {len(output.layout)} "
                                f"dimensions, got shape {list(array.shape)}")
    if output.layout.endswith("HWC"):
        images = images.transpose(0, 3, 1, 2)
    if images.shape[1] != 3:
        raise UndecodableImages(f"output {output.name}: layout {output.layout} needs 3 channels (RGB), got shape "
                                f"{list(array.shape)}")
    offset, divisor = RANGES[output.value_range]
    if images.dtype == np.float32 and offset == 0 and divisor == 1:
        return images  # today's bls: no copy
    return (images.astype(np.float32) - np.float32(offset)) / np.float32(divisor)


def _files(output: ImageOutput, array: np.ndarray) -> list:
    if output.datatype == "UINT8":
        rows = array.reshape(1, -1) if array.ndim <= 1 else array.reshape(array.shape[0], -1)
        return [row.tobytes() for row in rows]
    return list(np.asarray(array, dtype=object).reshape(-1))


def _decode_file(output: ImageOutput, item, index: int) -> np.ndarray:
    data = item if isinstance(item, (bytes, bytearray, memoryview)) else str(item).encode()
    try:
        if output.format == "base64":
            data = base64.b64decode(bytes(data), validate=True)
        return decode_image(data)
    except ValueError as exc:  # binascii.Error is a ValueError
        raise UndecodableImages(f"output {output.name}[{index}]: {exc}") from None
