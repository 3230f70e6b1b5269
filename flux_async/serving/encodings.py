"""The image encodings `bls` returns (docs/bls.md, `image_encoding`): FP32 as generated, UINT8 and PNG made here."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import torch


def uint8_images(images: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] float in [0, 1] → [N, H, W, 3] uint8 on the same device, equal to `measure.images.to_uint8`."""
    # the same float32 operations as to_uint8 (clip, x255, round half to even), so the values match exactly
    return (images.float().clamp(0.0, 1.0).permute(0, 2, 3, 1) * 255).round().to(torch.uint8).contiguous()


def png_file(image: np.ndarray) -> bytes:
    """An [H, W, 3] uint8 image as PNG bytes (PIL's defaults: the same bytes as the client's `encode_png`)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


async def png_images(pixels: torch.Tensor) -> np.ndarray:
    """uint8 images [N, H, W, 3] → a BYTES array [N] of PNG files; the copy and the encoding run in worker threads
    (one per image: zlib releases the GIL), off the event loop."""
    host = await asyncio.to_thread(lambda: pixels.cpu().numpy())
    files = await asyncio.gather(*(asyncio.to_thread(png_file, image) for image in host))
    return np.array(files, dtype=np.object_)
