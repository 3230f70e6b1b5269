"""The requests a run sends: prompts, seeds and settings drawn reproducibly from the scenario's workload."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from flux_async.scenario.workload_config import WorkloadConfig


@dataclass(frozen=True)
class Job:
    """One `bls` request. `seeds` is None when the server draws them."""

    index: int
    prompts: tuple[str, ...]
    seeds: tuple[int, ...] | None
    steps: int | None
    guidance: float | None
    height: int | None
    width: int | None
    max_sequence_length: int | None
    verify: bool = False  # keep the images for verification
    images_per_prompt: int = 1  # openai-images / nim: images asked for the one prompt (n, samples)
    negative_prompt: str | None = None  # sent where the target maps it
    request_class: str | None = None  # the workload class it was drawn from (None: the workload has no classes)

    def bls_kwargs(self) -> dict:
        """Keyword arguments for `flux_async.targets.bls_inputs.bls_inputs` (None = server default)."""
        return dict(seeds=self.seeds, num_inference_steps=self.steps, guidance_scale=self.guidance,
                    height=self.height, width=self.width, max_sequence_length=self.max_sequence_length)


@dataclass(frozen=True)
class _Variant:
    """One class's settings, ready to draw from."""

    name: str | None
    settings: WorkloadConfig
    counts: tuple[int, ...]
    cum_weights: list[float]


class JobSource:
    """Request k of a run, the same for the same scenario: a class drawn by weight (when the workload has classes),
    prompts drawn with the workload's seed, and each prompt keeps one image seed for the whole run (workload seed +
    the prompt's index in its class's prompts), so outputs can be checked and reproduced."""

    def __init__(self, workload: WorkloadConfig, stream: int = 0):
        self.workload = workload  # stream: another draw of prompts from the same seed (one per --workers process)
        self._rng = random.Random((workload.seed or 0) * 1_000_003 + stream)
        pairs: list[tuple[str | None, WorkloadConfig]] = [(c.name, c.settings) for c in workload.classes.values()]
        pairs = pairs or [(None, workload)]
        self._variants = []
        for name, settings in pairs:
            counts, weights = zip(*sorted(settings.prompts_per_request.items()))
            self._variants.append(_Variant(name, settings, counts, list(itertools.accumulate(weights))))
        self._class_weights = list(itertools.accumulate(c.weight for c in workload.classes.values()))
        self._issued = 0

    def next(self) -> Job:
        variant = self._variants[0] if len(self._variants) == 1 else \
            self._rng.choices(self._variants, cum_weights=self._class_weights)[0]
        w = variant.settings
        count = variant.counts[0] if len(variant.counts) == 1 else \
            self._rng.choices(variant.counts, cum_weights=variant.cum_weights)[0]
        indices = [int(self._rng.random() * len(w.prompts)) for _ in range(count)]
        seeds = None if w.seed is None else tuple(w.seed + i for i in indices)
        job = Job(self._issued, tuple(w.prompts[i] for i in indices), seeds, w.steps, w.guidance, w.height, w.width,
                  w.max_sequence_length, images_per_prompt=w.images_per_prompt, negative_prompt=w.negative_prompt,
                  request_class=variant.name)
        self._issued += 1
        return job
