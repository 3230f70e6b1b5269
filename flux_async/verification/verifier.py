"""Correctness under load: every checked image is compared with its reference — the image the same server makes for
the same (prompt, seed, steps, guidance, size) as a single-prompt request at low load.

References are computed before the run for the workload's known keys (sequentially: nothing else in flight), and on
first need for the others, after their phase has drained. The first reference is asked for twice: a server that
cannot reproduce its own single-prompt result cannot be checked, and that is reported as a failure too.
Comparisons run in a worker thread, off the event loop, so they do not distort the latency being measured.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from flux_async.measure.gates import Gate, WorstScores, gate_summary
from flux_async.measure.image_scores import Scores, load_metrics, score
from flux_async.measure.images import save_png
from flux_async.scenario.config import TargetConfig, VerifyConfig, WorkloadConfig
from flux_async.scenario.workload import Job
from flux_async.targets.base import Outcome, Target
from flux_async.targets.factory import make_target

PRECOMPUTE_LIMIT = 64  # references computed before the run at most; the rest on first need


@dataclass(frozen=True)
class ReferenceKey:
    """What an image depends on (None: the server's default)."""

    prompt: str
    seed: int
    steps: int | None
    guidance: float | None
    height: int | None
    width: int | None
    max_sequence_length: int | None
    negative_prompt: str | None = None  # sent where the target maps it
    extra: str | None = None  # a trace line's `extra` inputs (canonical JSON): they may change the image

    @classmethod
    def of(cls, job: Job, item: int, seed: int) -> ReferenceKey:
        return cls(job.prompts[item], seed, job.steps, job.guidance, job.height, job.width, job.max_sequence_length,
                   job.negative_prompt, job.extra_key)

    def job(self) -> Job:
        """The reference's request: its one prompt and seed alone, one image (with the same extra inputs)."""
        return Job(-1, (self.prompt,), (self.seed,), self.steps, self.guidance, self.height, self.width,
                   self.max_sequence_length, verify=True, negative_prompt=self.negative_prompt,
                   extra=None if self.extra is None else json.loads(self.extra))

    def digest(self, model: str) -> str:
        values = list(asdict(self).values())
        if self.extra is None:
            values.pop()  # the digests of references cached before the key had extra inputs stay valid
            if self.negative_prompt is None:
                values.pop()  # ... and before it had a negative prompt
        return hashlib.sha256(json.dumps([model, *values]).encode()).hexdigest()[:24]


@dataclass
class Comparison:
    """An image's scores and, when it failed the gate, why."""

    scores: Scores
    reasons: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.reasons


def compare(received: np.ndarray, reference: np.ndarray, gate: Gate) -> Comparison:
    """Score a received [3, H, W] image in [0, 1] against its reference and judge it by `gate`."""
    scores = score(received, reference, gate.pixel_tolerance, ssim=gate.needs_ssim)
    return Comparison(scores, gate.failures(scores))


@dataclass
class Mismatch:
    phase: str
    request: int
    item: int
    prompts_in_request: int
    key: ReferenceKey
    comparison: Comparison
    request_class: str | None = None
    files: list[str] = field(default_factory=list)

    def describe(self) -> str:
        s = self.comparison.scores
        psnr = "identical" if s.psnr is None else f"PSNR {s.psnr:.1f} dB"
        where = f"phase {self.phase!r}" + (f" class {self.request_class!r}" if self.request_class else "")
        return (f"{where}, request #{self.request} item {self.item + 1}/{self.prompts_in_request}: "
                f"prompt {self.key.prompt!r} seed {self.key.seed}: {'; '.join(self.comparison.reasons)} (max abs diff "
                f"{s.max_abs:.4g}, mean {s.mean_abs:.4g}, {psnr})")

    def as_dict(self) -> dict:
        return {"phase": self.phase, "request": self.request, "item": self.item,
                "prompts_in_request": self.prompts_in_request, "prompt": self.key.prompt, "seed": self.key.seed,
                **({"class": self.request_class} if self.request_class else {}),
                **_finite(self.comparison.scores.as_dict()), "reasons": self.comparison.reasons, "files": self.files}


def _finite(values: dict) -> dict:
    """JSON has no infinity: a defective image's infinite differences are written as null."""
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in values.items()}


def workload_keys(workload: WorkloadConfig) -> list[ReferenceKey]:
    """The keys a workload with fixed seeds can produce (prompt i of a class always has seed base + i)."""
    if workload.seed is None:
        return []
    keys = [ReferenceKey(p, w.seed + i, w.steps, w.guidance, w.height, w.width, w.max_sequence_length,
                         w.negative_prompt)
            for w in workload.variants() if w.seed is not None for i, p in enumerate(w.prompts)]
    return list(dict.fromkeys(keys))[:PRECOMPUTE_LIMIT]


class Verifier:
    """Checks images as the engine receives them; `settle()` after each phase finishes what is pending."""

    def __init__(self, config: VerifyConfig, target_config: TargetConfig, output_dir: Path, seed: int = 0):
        self.config, self.target_config, self.output_dir = config, target_config, output_dir
        self.enabled = config.enabled
        self.note = ""
        self._target: Target | None = None
        self._references: dict[ReferenceKey, np.ndarray] = {}
        self._adopted = 0  # references handed over (adopt), not computed here
        self._failed_references: dict[ReferenceKey, str] = {}
        self._pending: list[tuple[str, Job, int, ReferenceKey, np.ndarray]] = []
        self._futures: list[asyncio.Future] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="flux_async-verify")
        self._rng = random.Random(seed)
        self._credit = 0.0
        self.checked: dict[str, int] = {}
        self.mismatches: list[Mismatch] = []
        self.mismatch_count: dict[str, int] = {}
        self.by_class: dict[tuple[str, str], list[int]] = {}  # (phase, class) → [checked, mismatches]
        self.unchecked = 0
        self.unstable: list[str] = []
        self.worst = WorstScores()

    async def open(self, workload: WorkloadConfig | None = None) -> None:
        if not self.enabled:
            return
        self._target = make_target(self.target_config)
        if self._target.unverifiable or not self._target.returns_images:
            self.enabled = False
            self.note = self._target.unverifiable or "the target makes no images: nothing to verify"
            return
        # a target whose responses do not say which seed made each image (openai-images): an image is checked only
        # when its seed is the request's own, the first of each request
        if workload is not None and not getattr(self._target, "returns_seeds", True):
            protocol = self.target_config.protocol
            if workload.seed is None:
                self.enabled = False
                self.note = (f"workload.seed is random and {protocol} responses carry no seed: the images cannot be "
                             "matched with single runs")
                return
            if workload.images_per_prompt > 1:
                self.note = (f"{protocol} responses carry no seed per image: only the first of each request's "
                             f"{workload.images_per_prompt} images (the request's seed) is checked")
        await self._target.open()
        load_metrics()  # now, not in the worker thread while the load runs

    def sample(self) -> bool:
        """Whether to check the next request: the scenario's sample_rate, reproducibly, at random positions but less
        than 2/sample_rate requests apart (a credit that each request adds to and each check spends)."""
        if not self.enabled or self.config.sample_rate >= 1:
            return self.enabled
        self._credit += self.config.sample_rate
        if self._rng.random() < self._credit:
            self._credit -= 1
            return True
        return False

    # ---- references --------------------------------------------------------------------------------------------
    def _cache_path(self, key: ReferenceKey) -> Path | None:
        if not self.config.cache_dir:
            return None
        return Path(self.config.cache_dir) / f"{key.digest(self.target_config.model_name)}.npy"

    async def _fetch(self, key: ReferenceKey) -> np.ndarray | None:
        assert self._target is not None, "open() first"
        outcome: Outcome = await self._target.send(key.job())
        if not outcome.ok or outcome.pixels is None:
            self._failed_references[key] = f"{outcome.error_kind}: {outcome.error}"
            return None
        return outcome.pixels[0]

    async def reference(self, key: ReferenceKey) -> np.ndarray | None:
        """The reference image for `key`: memory, then the disk cache, then a single-prompt request."""
        if key in self._references:
            return self._references[key]
        if key in self._failed_references:
            return None
        path = self._cache_path(key)
        if path is not None and path.is_file():
            image = np.load(path)
        else:
            image = await self._fetch(key)
            if image is None:
                return None
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                np.save(path, image)
        self._references[key] = image
        return image

    @property
    def references(self) -> dict[ReferenceKey, np.ndarray]:
        """The references computed so far (a cluster's coordinator shares them with its agents)."""
        return dict(self._references)

    def adopt(self, references: dict[ReferenceKey, np.ndarray]) -> None:
        """Use references computed elsewhere (the coordinator's) instead of computing them again."""
        self._references.update(references)
        self._adopted += len(references)

    async def prepare(self, keys: list[ReferenceKey]) -> None:
        """Compute the references for `keys` one at a time, checking first that the server reproduces itself."""
        if not self.enabled or not keys:
            return
        first = await self.reference(keys[0])
        again = await self._fetch(keys[0]) if first is not None else None
        if first is not None and again is not None:  # `again` is fetched only when there is a `first`
            check = compare(again, first, self.config.gate)
            if not check.ok:
                self.unstable.append(f"the server does not reproduce its own single-prompt image for prompt "
                                     f"{keys[0].prompt!r} seed {keys[0].seed} ({'; '.join(check.reasons)}, max abs "
                                     f"diff {check.scores.max_abs:.4g}): references, and so the checks, cannot be "
                                     f"trusted")
        for key in keys[1:]:
            await self.reference(key)

    # ---- checks ------------------------------------------------------------------------------------------------
    def submit(self, phase: str, job: Job, outcome: Outcome) -> None:
        """Queue a check of every image the target kept of a successful, sampled request: one per prompt (Triton),
        or the images of the one prompt whose seeds are known (openai-images, nim)."""
        if not self.enabled or outcome.pixels is None:
            return
        seeds = outcome.seeds or job.seeds
        assert seeds is not None, "a verified image's seed is known (the server returns the seeds it drew)"
        several = job.images_per_prompt > 1  # then one prompt, and the images the target kept of it
        for item in range(len(outcome.pixels) if several else len(job.prompts)):
            key = ReferenceKey.of(job, 0 if several else item, seeds[item])
            if key in self._references:
                self._check(phase, job, item, key, outcome.pixels[item])
            else:
                self._pending.append((phase, job, item, key, outcome.pixels[item]))

    def _check(self, phase: str, job: Job, item: int, key: ReferenceKey, received: np.ndarray) -> None:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._pool, self._compare_and_save, phase, job, item, key, received)
        self._futures.append(future)

    def _compare_and_save(self, phase, job, item, key, received) -> None:
        """In the worker thread (one, so the counts need no lock): compare, count, save the first mismatches."""
        comparison = compare(received, self._references[key], self.config.gate)
        self.checked[phase] = self.checked.get(phase, 0) + 1
        by_class = self.by_class.setdefault((phase, job.request_class or ""), [0, 0])  # [checked, mismatches]
        by_class[0] += 1
        self.worst.add(comparison.scores, comparison.ok)
        if comparison.ok:
            return
        self.mismatch_count[phase] = self.mismatch_count.get(phase, 0) + 1
        by_class[1] += 1
        mismatch = Mismatch(phase, job.index, item, max(len(job.prompts), job.images_per_prompt), key, comparison,
                            job.request_class)
        if len(self.mismatches) < self.config.save_mismatches:
            mismatch.files = self._save(len(self.mismatches) + 1, mismatch, received)
        self.mismatches.append(mismatch)

    def _save(self, number: int, mismatch: Mismatch, received: np.ndarray) -> list[str]:
        """reference.png, received.png, difference.png (|diff| scaled so its max is white) and meta.json."""
        folder = self.output_dir / f"mismatch-{number:02d}-{mismatch.phase}-request{mismatch.request}"
        reference = self._references[mismatch.key]
        received = np.nan_to_num(received, nan=0.0, posinf=1.0, neginf=0.0)  # a defect still saves viewable files
        diff = np.abs(received - reference) if received.shape == reference.shape else np.zeros_like(reference)
        scale = float(np.nan_to_num(diff).max()) or 1.0
        files = [save_png(reference, folder / "reference.png"), save_png(received, folder / "received.png"),
                 save_png(diff / scale, folder / "difference.png")]
        meta = mismatch.as_dict() | {"difference_png_scale": scale, **asdict(mismatch.key)}
        (folder / "meta.json").write_text(json.dumps(meta, indent=2))
        return [str(f) for f in files] + [str(folder / "meta.json")]

    async def settle(self) -> None:
        """Compute missing references (now, at low load), check what waited for them, and wait for every check."""
        pending, self._pending = self._pending, []
        for phase, job, item, key, received in pending:
            if await self.reference(key) is None:
                self.unchecked += 1
                continue
            self._check(phase, job, item, key, received)
        futures, self._futures = self._futures, []
        if futures:
            await asyncio.gather(*futures)

    async def close(self) -> None:
        await self.settle()
        self._pool.shutdown(wait=True)
        if self._target is not None:
            await self._target.close()

    # ---- results -----------------------------------------------------------------------------------------------
    @property
    def failed(self) -> bool:
        return bool(self.mismatches or self.unstable)

    def phase_summary(self, phase: str) -> dict:
        return {"checked": self.checked.get(phase, 0), "mismatches": self.mismatch_count.get(phase, 0)}

    def class_summary(self, phases: set[str], request_class: str) -> dict:
        """Checked images and mismatches of one request class over `phases`."""
        counts = [self.by_class.get((phase, request_class), [0, 0]) for phase in phases]
        return {"checked": sum(c[0] for c in counts), "mismatches": sum(c[1] for c in counts)}

    def summary(self) -> dict:
        """The report's `verification` section."""
        return {"enabled": self.enabled, "checked": sum(self.checked.values()), "mismatches": len(self.mismatches),
                "unchecked": self.unchecked, "references": len(self._references) - self._adopted,
                "reference_errors": {k.prompt + f" (seed {k.seed})": v for k, v in self._failed_references.items()},
                "unstable_references": self.unstable, "sample_rate": self.config.sample_rate,
                **gate_summary(self.config.gate, self.worst.all, self.worst.passing),
                "mismatch_examples": [m.as_dict() for m in self.mismatches[:20]],
                **({"note": self.note} if self.note else {})}


def disabled_summary(note: str) -> dict:
    return {"enabled": False, "checked": 0, "mismatches": 0, "note": note}


def keep(job: Job, verifier: Verifier | None) -> Job:
    """The job, marked for verification when the verifier samples it."""
    return replace(job, verify=True) if verifier is not None and verifier.sample() else job
