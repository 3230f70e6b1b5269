"""The requests a run sends: prompts, seeds and settings drawn reproducibly from the scenario's workload."""

from __future__ import annotations

import itertools
import json
import random
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flux_async import contract
from flux_async.scenario.workload_config import WorkloadConfig

if TYPE_CHECKING:
    from flux_async.scenario.trace_file import TraceLine


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
    extra: dict[str, Any] | None = None  # a trace line's `extra`: inputs by tensor name (Contract.arrays)

    @property
    def extra_key(self) -> str | None:
        """`extra` as canonical JSON text: part of what identifies the request (and its images)."""
        return None if not self.extra else json.dumps(self.extra, sort_keys=True, separators=(",", ":"))

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
        self._indices: dict[int, dict[str, int]] = {}  # id(settings) → prompt → its first index

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

    def from_trace(self, line: TraceLine) -> Job:
        """The request of a trace line: what the line leaves out comes from its class's settings (when the workload
        has that class), else from the workload's; a prompt without a seed keeps the seed it would have in the
        workload (seed + its index in the prompts), or seed + a hash of its text when it is not among them."""
        klass = self.workload.classes.get(line.request_class) if line.request_class else None
        w = klass.settings if klass is not None else self.workload
        seeds = line.seeds
        if seeds is None and w.seed is not None:
            seeds = tuple(self._seed_of(w, prompt) for prompt in line.prompts)

        def pick(own, default):
            return default if own is None else own

        job = Job(self._issued, line.prompts, seeds, pick(line.steps, w.steps), pick(line.guidance, w.guidance),
                  pick(line.height, w.height), pick(line.width, w.width),
                  pick(line.max_sequence_length, w.max_sequence_length),
                  images_per_prompt=pick(line.images_per_prompt, w.images_per_prompt),
                  negative_prompt=pick(line.negative_prompt, w.negative_prompt), request_class=line.request_class,
                  extra=line.extra)
        self._issued += 1
        return job

    def _seed_of(self, settings: WorkloadConfig, prompt: str) -> int:
        index = self._indices.get(id(settings))
        if index is None:
            index = self._indices[id(settings)] = {p: i for i, p in reversed(list(enumerate(settings.prompts)))}
        assert settings.seed is not None
        offset = index.get(prompt)
        if offset is None:
            offset = zlib.crc32(prompt.encode("utf-8"))
        return (settings.seed + offset) % (contract.MAX_SEED + 1)
