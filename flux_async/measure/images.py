"""Image helpers: float RGB [3, H, W] in [0, 1] ↔ PNG."""

from __future__ import annotations

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
