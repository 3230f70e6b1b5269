"""Verification gates: when a received image passes against its reference.

- `auto` (the default): PSNR and worst-tile PSNR floors that pass bf16/fp16 GPU rounding of batched kernels and fail
  the serving bugs measured in BENCHMARKS.md ("Verification gate"), with the margin to each written down there.
- `exact`: more than 95 % of pixels within one 8-bit level, for bitwise-deterministic fp32 servers.
- `explicit`: the thresholds a scenario names, and only those.

Under every gate a defect (wrong shape, NaN or infinite values, an all-constant image) is a mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import reduce

from flux_async.measure.image_scores import TILE, Scores

AUTO_MIN_PSNR = 42.0  # dB, midway between bf16 rounding (worst 48.4) and the closest bug (35.4): BENCHMARKS.md
AUTO_MIN_TILE_PSNR = 39.0  # dB, midway between rounding (worst tile 45.9) and the closest bug (33.9)
EXACT_TOLERANCE, EXACT_SIMILARITY = 1 / 255, 0.95


@dataclass(frozen=True)
class Criterion:
    """One threshold: the gate field, the score it reads, and whether higher scores are better."""

    key: str
    score: str
    higher_is_better: bool
    label: str
    unit: str = ""

    def show(self, value: float | None) -> str:
        if value is None:
            return "identical"
        if self.unit == "%":
            return f"{value:.1%}"
        return f"{value:.1f} dB" if self.unit == "dB" else f"{value:.4g}"

    def passes(self, value: float | None, threshold: float) -> bool:
        if value is None:  # identical images: PSNR is infinite
            return self.higher_is_better
        return value >= threshold if self.higher_is_better else value <= threshold

    def worse(self, a: float | None, b: float | None) -> float | None:
        """The worse of two scores (None is a perfect PSNR, an absent SSIM)."""
        if a is None or b is None:
            return b if a is None else a
        return min(a, b) if self.higher_is_better else max(a, b)

    def margin(self, worst: float | None, threshold: float) -> float | None:
        if worst is None:
            return None
        return worst - threshold if self.higher_is_better else threshold - worst


CRITERIA = (Criterion("min_psnr", "psnr", True, "PSNR", "dB"),
            Criterion("min_tile_psnr", "tile_psnr", True, f"{TILE}x{TILE}-tile PSNR", "dB"),
            Criterion("min_similarity", "similarity", True, "share of pixels", "%"),
            Criterion("max_abs", "max_abs", False, "max abs diff"),
            Criterion("min_ssim", "ssim", True, "SSIM"))


@dataclass(frozen=True)
class Gate:
    """A named set of thresholds (None: not checked); `pixel_tolerance` is what `min_similarity` counts within."""

    name: str
    min_psnr: float | None = None
    min_tile_psnr: float | None = None
    min_similarity: float | None = None
    pixel_tolerance: float = EXACT_TOLERANCE
    max_abs: float | None = None
    min_ssim: float | None = None

    @property
    def criteria(self) -> list[tuple[Criterion, float]]:
        return [(c, getattr(self, c.key)) for c in CRITERIA if getattr(self, c.key) is not None]

    @property
    def needs_ssim(self) -> bool:
        return self.min_ssim is not None

    def failures(self, scores: Scores) -> list[str]:
        """Why `scores` fail this gate (empty: they pass)."""
        if scores.defect:
            return [scores.defect]
        reasons = []
        for criterion, threshold in self.criteria:
            value = getattr(scores, criterion.score)
            if not criterion.passes(value, threshold):
                sign = "<" if criterion.higher_is_better else ">"
                within = self._within(criterion)
                reasons.append(f"{criterion.label}{within} {criterion.show(value)} {sign} {criterion.show(threshold)}")
        return reasons

    def _within(self, criterion: Criterion) -> str:
        return f" within {self.pixel_tolerance * 255:.3g}/255" if criterion.key == "min_similarity" else ""

    def describe(self) -> str:
        """One line: the name and what it checks."""
        parts = []
        for criterion, threshold in self.criteria:
            sign = ">=" if criterion.higher_is_better else "<="
            within = self._within(criterion)
            parts.append(f"{criterion.label}{within} {sign} {criterion.show(threshold)}")
        return f"{self.name}: " + (" and ".join(parts) or "no thresholds") + "; a defective image always fails"

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"description": self.describe()}

    @classmethod
    def from_dict(cls, data: dict) -> Gate:
        """The gate a report was made under (`as_dict`'s inverse)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

    def explain(self, worst_passing: dict) -> str:
        """"worst PSNR 48.5 dB, gate 40.0 dB (margin 8.5 dB); ...": how close the passing images came."""
        if not worst_passing:
            return "no image passed"
        parts = []
        for criterion, threshold in self.criteria:
            worst = worst_passing.get(criterion.key)
            margin = criterion.margin(worst, threshold)
            tail = "" if margin is None else f" (margin {criterion.show(margin)})"
            parts.append(f"worst {criterion.label} {criterion.show(worst)}, gate {criterion.show(threshold)}{tail}")
        return "; ".join(parts)

    def margins(self, worst_passing: dict) -> dict:
        return {c.key: c.margin(worst_passing.get(c.key), t) for c, t in self.criteria}


GATES = {"auto": Gate("auto", min_psnr=AUTO_MIN_PSNR, min_tile_psnr=AUTO_MIN_TILE_PSNR),
         "exact": Gate("exact", min_similarity=EXACT_SIMILARITY, pixel_tolerance=EXACT_TOLERANCE)}
THRESHOLD_KEYS = ("min_psnr", "min_tile_psnr", "min_similarity", "pixel_tolerance", "max_abs", "min_ssim")


def explicit_gate(thresholds: dict) -> Gate:
    """`gate: explicit` from the scenario's thresholds; tolerance and similarity fill each other in as `exact`'s."""
    values = dict(thresholds)
    if "pixel_tolerance" in values and values.get("min_similarity") is None:
        values["min_similarity"] = EXACT_SIMILARITY
    return Gate("explicit", **values)


def gate_summary(gate: Gate, worst: dict, worst_passing: dict) -> dict:
    """The report's gate keys: the gate in force, the worst scores (all checked, and passing) and the margins."""
    return {"gate": gate.as_dict(), "worst": worst, "worst_passing": worst_passing,
            "margin": gate.margins(worst_passing), "gate_explained": gate.explain(worst_passing)}


class WorstScores:
    """The worst value of every criterion's score, over all checked images and over those that passed."""

    def __init__(self):
        self.all: dict[str, float | None] = {}
        self.passing: dict[str, float | None] = {}

    def add(self, scores: Scores, passed: bool) -> None:
        if scores.defect:
            return
        for criterion in CRITERIA:
            value = getattr(scores, criterion.score)
            if value is None and criterion.score == "ssim":
                continue
            for table in (self.all, self.passing) if passed else (self.all,):
                table[criterion.key] = criterion.worse(table[criterion.key], value) if criterion.key in table else value

    @staticmethod
    def combine(tables: list[dict]) -> dict:
        """Several runs' worst tables (workers, capacity steps) as one."""
        out: dict = {}
        for criterion in CRITERIA:
            present = [t[criterion.key] for t in tables if criterion.key in t]
            if present:
                out[criterion.key] = reduce(criterion.worse, present)
        return out
