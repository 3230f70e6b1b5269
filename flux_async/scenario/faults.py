"""The faults a scenario injects (`faults:`), as data: which action, on which model, when and for how long.
Applying them is load/faults.py's job."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flux_async import contract
from flux_async.scenario.reader import Reader, parse_duration

ACTIONS = ("unload", "slow", "kill-server")
# Where each model's Triton class lives, to build a slowed copy of it.
MODEL_CLASSES = {contract.CLIP_ENCODER: ("stage_models", "ClipEncoderModel"),
                 contract.T5_ENCODER: ("stage_models", "T5EncoderModel"),
                 contract.DIT_TRANSFORMER: ("stage_models", "DitTransformerModel"),
                 contract.VAE_DECODER: ("stage_models", "VaeDecoderModel"),
                 contract.BLS: ("bls_models", "BlsModel"), contract.BLS_STREAM: ("bls_models", "BlsStreamModel")}


@dataclass
class FaultConfig:
    action: str
    at_s: float
    duration_s: float
    model: str | None = None
    delay_s: float = 0.0


def parse_faults(r: Reader, value: Any, path: str = "faults") -> list[FaultConfig]:
    """The scenario's `faults:` list, every problem under its YAML path."""
    if value is None:
        return []
    if not isinstance(value, list):
        r.problem(path, "must be a list of {action, at, duration, ...}")
        return []
    faults = []
    for i, item in enumerate(value):
        where = f"{path}[{i}]"
        item = r.mapping(item, where, ("action", "model", "at", "duration", "delay"), ("action", "at", "duration"))
        action = r.choice(item, "action", where, ACTIONS, "unload")
        model = item.get("model")
        if action in ("unload", "slow") and model not in MODEL_CLASSES:
            r.problem(f"{where}.model", f"must be one of {', '.join(MODEL_CLASSES)}, got {model!r}")
        if action == "kill-server" and model is not None:
            r.problem(f"{where}.model", "kill-server takes no model")
        delay = r.get(item, "delay", where, parse_duration, 0.0, lambda v: v > 0, "must be > 0")
        if action == "slow" and not delay:
            r.problem(f"{where}.delay", "is required for slow (e.g. 300ms)")
        faults.append(FaultConfig(action, r.get(item, "at", where, parse_duration, 0.0, lambda v: v >= 0,
                                                "must be >= 0"),
                                  r.get(item, "duration", where, parse_duration, 1.0, lambda v: v > 0, "must be > 0"),
                                  model, delay))
    return faults
