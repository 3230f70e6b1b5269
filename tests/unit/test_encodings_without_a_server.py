"""The encodings `bls` returns images in (`image_encoding`, docs/bls.md), without a server: the server's UINT8 and
PNG equal `measure.images`' to_uint8 and encode_png, and the client sends the input only when given."""

from __future__ import annotations

import asyncio

import numpy as np
import torch

from flux_async.measure.images import decode_image, encode_png, to_uint8
from flux_async.serving.encodings import png_images, uint8_images
from flux_async.targets.bls_inputs import bls_arrays


def images() -> torch.Tensor:
    """2 images [3, 16, 24]: random values, values out of [0, 1], and every rounding boundary (k + 0.5) / 255."""
    values = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(0)) * 1.2 - 0.1
    boundaries = (torch.arange(255, dtype=torch.float32) + 0.5) / 255
    values.view(-1)[:255] = boundaries
    values.view(-1)[255:510] = torch.nextafter(boundaries, torch.zeros(()))
    return values


def test_uint8_images_equal_to_uint8_exactly():
    batch = images()
    got = uint8_images(batch)
    assert got.dtype == torch.uint8 and got.shape == (2, 16, 24, 3)
    for image, pixels in zip(batch.numpy(), got.numpy()):
        np.testing.assert_array_equal(pixels, to_uint8(image))


def test_png_images_are_encode_png_of_each_image_and_decode_to_the_uint8_pixels():
    batch = images()
    files = asyncio.run(png_images(uint8_images(batch)))
    assert files.dtype == np.object_ and files.shape == (2,)
    for image, data in zip(batch.numpy(), files):
        assert data == encode_png(image)
        np.testing.assert_array_equal(decode_image(data), to_uint8(image).transpose(2, 0, 1).astype(np.float32) / 255)


def test_bls_arrays_send_image_encoding_only_when_given():
    assert "image_encoding" not in bls_arrays(["a cat"])
    sent = bls_arrays(["a cat"], image_encoding="png")["image_encoding"]
    assert sent.dtype == np.object_ and sent.tolist() == [b"png"]
