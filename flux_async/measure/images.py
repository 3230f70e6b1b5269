"""Image helpers: float RGB [3, H, W] in [0, 1] ↔ PNG (and JPEG bytes in)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np


def to_uint8(image: np.ndarray) -> np.ndarray:
    """[3, H, W] float in [0, 1] → [H, W, 3] uint8 (rounded, as diffusers' numpy_to_pil)."""
    return (np.clip(np.asarray(image, dtype=np.float32), 0.0, 1.0).transpose(1, 2, 0) * 255).round().astype(np.uint8)


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a [3, H, W] image in [0, 1] as PNG; returns the path."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(image)).save(path)
    return path


def encode_png(image: np.ndarray) -> bytes:
    """A [3, H, W] image in [0, 1] as PNG bytes; an [H, W, 3] uint8 image (as `to_uint8` makes) is taken as is."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image if image.dtype == np.uint8 else to_uint8(image)).save(buffer, format="PNG")
    return buffer.getvalue()


def decode_image(data: bytes | bytearray | memoryview) -> np.ndarray:
    """PNG or JPEG bytes → [3, H, W] float32 in [0, 1]; raises ValueError naming what the bytes are not."""
    from PIL import Image, UnidentifiedImageError

    raw = bytes(data)
    try:
        with Image.open(io.BytesIO(raw)) as picture:
            picture.load()
            rgb = np.asarray(picture.convert("RGB"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        head = raw[:8].hex()
        why = "" if isinstance(exc, UnidentifiedImageError) else f": {exc}"  # PIL's text names only its buffer
        raise ValueError(f"not a decodable PNG or JPEG image ({len(raw)} bytes, starting {head}){why}") from None
    return np.ascontiguousarray(rgb.transpose(2, 0, 1) / 255.0)
