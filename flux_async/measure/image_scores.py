"""How far a received image is from its reference: the scores the verification gates read.

PSNR and SSIM come from scikit-image; the worst tile's PSNR is the same formula over
`TILE`-pixel squares (skimage's `block_reduce`), so an error confined to a small region cannot hide in the average.
A defect (wrong shape, NaN or infinite pixels, an all-constant image) makes an image unusable whatever its scores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

TILE = 32  # pixels per side of the squares the worst-tile PSNR is taken over
DATA_RANGE = 1.0  # images are float RGB in [0, 1]


@dataclass(frozen=True)
class Scores:
    """One received image against its reference (PSNRs are None when the images are identical: infinite)."""

    psnr: float | None  # dB, whole image
    tile_psnr: float | None  # dB, the worst TILE x TILE square
    max_abs: float
    mean_abs: float
    similarity: float  # fraction of pixels whose channels are all within the tolerance
    ssim: float | None = None  # only when asked for: about 50x the cost of the rest
    defect: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def load_metrics():
    """scikit-image's functions, imported on first use: they bring scipy.stats (0.6 s), which a run that checks no
    image never needs. The verifier calls this before the load starts."""
    from skimage.measure import block_reduce
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    return block_reduce, peak_signal_noise_ratio, structural_similarity


def _psnr(mse: float) -> float | None:
    return None if mse == 0 else 10 * float(np.log10(DATA_RANGE ** 2 / mse))


def defect(received: np.ndarray, reference: np.ndarray) -> str | None:
    """Why `received` cannot be compared as an image at all, or None."""
    if received.shape != reference.shape:
        return f"shape {list(received.shape)} != reference {list(reference.shape)}"
    for name, image in (("image", received), ("reference", reference)):
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        if bad:
            return f"{'' if name == 'image' else 'reference: '}{bad} NaN or infinite values"
    low, high = float(received.min()), float(received.max())
    if low == high:
        return f"constant image (every value {low:.4g})"
    return None


def score(received: np.ndarray, reference: np.ndarray, tolerance: float = 1 / 255, ssim: bool = False) -> Scores:
    """Score two [3, H, W] float images in [0, 1]; a defective pair gets the worst scores and says why."""
    block_reduce, peak_signal_noise_ratio, structural_similarity = load_metrics()
    problem = defect(received, reference)
    if problem is not None:
        return Scores(0.0, 0.0, float("inf"), float("inf"), 0.0, 0.0 if ssim else None, problem)
    received, reference = received.astype(np.float32, copy=False), reference.astype(np.float32, copy=False)
    diff = np.abs(received - reference)
    max_abs = float(diff.max())
    psnr = None if max_abs == 0 else float(peak_signal_noise_ratio(reference, received, data_range=DATA_RANGE))
    # sizes that are not multiples of TILE: edge tiles padded with NaN and averaged over their real pixels only
    whole = diff.shape[1] % TILE == 0 and diff.shape[2] % TILE == 0
    tile_mse = block_reduce(diff * diff, (diff.shape[0], TILE, TILE), np.mean if whole else np.nanmean,
                            cval=0 if whole else np.nan)
    within = np.all(diff <= tolerance, axis=0)  # a pixel matches when all its channels do
    structure = None
    if ssim:
        structure = float(structural_similarity(reference, received, data_range=DATA_RANGE, channel_axis=0))
    return Scores(psnr, _psnr(float(tile_mse.max())), max_abs, float(diff.mean()), float(within.mean()), structure)
