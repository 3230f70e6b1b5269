"""The requests a run sends: prompts, seeds and settings drawn reproducibly from the scenario's workload."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from flux_async.scenario.config import WorkloadConfig


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

    def bls_kwargs(self) -> dict:
        """Keyword arguments for `flux_async.targets.bls_inputs.bls_inputs` (None = server default)."""
        return dict(seeds=self.seeds, num_inference_steps=self.steps, guidance_scale=self.guidance,
                    height=self.height, width=self.width, max_sequence_length=self.max_sequence_length)


class JobSource:
    """Request k of a run, the same for the same scenario: prompts drawn with the workload's seed, and each prompt
    keeps one image seed for the whole run (workload seed + the prompt's index), so outputs can be checked and
    reproduced."""

    def __init__(self, workload: WorkloadConfig, stream: int = 0):
        self.workload = workload  # stream: another draw of prompts from the same seed (one per --workers process)
        self._rng = random.Random((workload.seed or 0) * 1_000_003 + stream)
        counts, weights = zip(*sorted(workload.prompts_per_request.items()))
        self._counts, self._cum_weights = counts, list(itertools.accumulate(weights))
        self._prompt_count = len(workload.prompts)
        self._issued = 0

    def next(self) -> Job:
        w = self.workload
        count = self._counts[0] if len(self._counts) == 1 else \
            self._rng.choices(self._counts, cum_weights=self._cum_weights)[0]
        indices = [int(self._rng.random() * self._prompt_count) for _ in range(count)]
        seeds = None if w.seed is None else tuple(w.seed + i for i in indices)
        job = Job(self._issued, tuple(w.prompts[i] for i in indices), seeds, w.steps, w.guidance, w.height, w.width,
                  w.max_sequence_length, images_per_prompt=w.images_per_prompt, negative_prompt=w.negative_prompt)
        self._issued += 1
        return job
