"""Image comparison gates, reference keys and sampling (no server)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flux_async.measure.gates import GATES, WorstScores, explicit_gate, gate_summary
from flux_async.scenario.config import TargetConfig, VerifyConfig, WorkloadConfig, parse_scenario
from flux_async.scenario.workload import Job
from flux_async.verification.verifier import ReferenceKey, Verifier, compare, keep, workload_keys

RNG = np.random.default_rng(0)
IMAGE = RNG.random((3, 32, 32), dtype=np.float32)


AUTO, EXACT = GATES["auto"], GATES["exact"]


def _noise_at(psnr_db: float, shape=IMAGE.shape) -> np.ndarray:
    """Gaussian noise whose PSNR against nothing is `psnr_db` (RMS = 10^(-psnr/20))."""
    return RNG.normal(0, 10 ** (-psnr_db / 20), shape).astype(np.float32)


def test_identical_images_pass_every_gate_with_infinite_psnr():
    for gate in (AUTO, EXACT):
        result = compare(IMAGE, IMAGE.copy(), gate)
        assert result.ok and result.scores.max_abs == 0 and result.scores.psnr is None
        assert result.scores.similarity == 1.0


def test_rounding_noise_passes_auto_but_not_exact():
    """bf16-sized noise (48 dB, the worst measured on an H200) is why auto exists: exact counts it as a mismatch."""
    noisy = np.clip(IMAGE + _noise_at(48), 0, 1)
    assert compare(noisy, IMAGE, AUTO).ok
    result = compare(noisy, IMAGE, EXACT)
    assert not result.ok and "share of pixels within 1/255" in result.reasons[0]


def test_ten_percent_of_another_image_fails_auto_on_psnr():
    other = RNG.random(IMAGE.shape, dtype=np.float32)
    result = compare(0.9 * IMAGE + 0.1 * other, IMAGE, AUTO)
    assert not result.ok and result.reasons[0].startswith("PSNR ") and "< 42.0 dB" in result.reasons[0]
    assert result.scores.psnr < 35


def test_a_small_corrupted_patch_fails_on_the_worst_tile_not_the_average():
    big = RNG.random((3, 512, 512), dtype=np.float32)
    patched = big.copy()
    patched[:, 100:108, 200:208] = RNG.random((3, 8, 8), dtype=np.float32)  # 0.02 % of the pixels
    result = compare(patched, big, AUTO)
    assert result.scores.psnr > AUTO.min_psnr and result.scores.tile_psnr < AUTO.min_tile_psnr
    assert not result.ok and result.reasons == [f"32x32-tile PSNR {result.scores.tile_psnr:.1f} dB < 39.0 dB"]


@pytest.mark.parametrize("broken, reason", [
    (lambda im: np.where(np.arange(im.size).reshape(im.shape) == 5, np.nan, im), "1 NaN or infinite values"),
    (lambda im: np.where(np.arange(im.size).reshape(im.shape) < 3, np.inf, im), "3 NaN or infinite values"),
    (lambda im: np.zeros_like(im), "constant image (every value 0)"),
    (lambda im: np.full_like(im, 0.5), "constant image (every value 0.5)"),
    (lambda im: im[:, :16], "shape [3, 16, 32] != reference [3, 32, 32]"),
])
def test_defects_fail_under_every_gate(broken, reason):
    lenient = explicit_gate({"min_psnr": 1.0})
    for gate in (AUTO, EXACT, lenient):
        result = compare(broken(IMAGE), IMAGE, gate)
        assert not result.ok and result.reasons == [reason] and result.scores.defect == reason


def test_exact_counts_pixels_not_channels():
    changed = IMAGE.copy()
    changed[0, :4, :] += 0.5  # 4 of 32 rows differ in one channel: 12.5 % of pixels
    result = compare(changed, IMAGE, explicit_gate({"min_similarity": 0.9}))
    assert result.scores.similarity == pytest.approx(0.875) and not result.ok
    assert compare(changed, IMAGE, explicit_gate({"min_similarity": 0.8})).ok


def test_explicit_gates_check_only_what_they_name():
    shifted = IMAGE + 0.003
    assert compare(shifted, IMAGE, explicit_gate({"pixel_tolerance": 0.004})).ok
    assert compare(shifted, IMAGE, explicit_gate({"max_abs": 0.001})).reasons == ["max abs diff 0.003 > 0.001"]
    assert compare(shifted, IMAGE, explicit_gate({"min_psnr": 60})).reasons[0].startswith("PSNR 50.5 dB < 60.0 dB")
    structure = compare(0.9 * IMAGE + 0.1 * RNG.random(IMAGE.shape, dtype=np.float32), IMAGE,
                        explicit_gate({"min_ssim": 0.999}))
    assert structure.scores.ssim is not None and structure.reasons[0].startswith("SSIM ")
    assert compare(shifted, IMAGE, AUTO).scores.ssim is None  # SSIM costs ~50x the rest: only when a gate asks


def test_worst_scores_margins_and_explanation():
    worst = WorstScores()
    for psnr in (48.5, 52.0):
        worst.add(compare(np.clip(IMAGE + _noise_at(psnr), 0, 1), IMAGE, AUTO).scores, True)
    failed = compare(0.5 * IMAGE + 0.5 * RNG.random(IMAGE.shape, dtype=np.float32), IMAGE, AUTO)
    worst.add(failed.scores, failed.ok)
    assert worst.passing["min_psnr"] == pytest.approx(48.5, abs=1.0) and worst.all["min_psnr"] < 30
    summary = gate_summary(AUTO, worst.all, worst.passing)
    assert summary["margin"]["min_psnr"] == pytest.approx(worst.passing["min_psnr"] - 42)
    assert summary["gate_explained"].startswith(f"worst PSNR {worst.passing['min_psnr']:.1f} dB, gate 42.0 dB (margin ")
    assert summary["gate"]["name"] == "auto" and summary["gate"]["description"].startswith("auto: PSNR >= 42.0 dB")
    combined = WorstScores.combine([worst.passing, {"min_psnr": None, "max_abs": 0.5}])
    assert combined["min_psnr"] == worst.passing["min_psnr"] and combined["max_abs"] == 0.5


def test_keys_follow_the_workload_seeds():
    workload = WorkloadConfig(prompts=["a", "b", "a"], seed=10, steps=2, height=64, width=64)
    assert [(k.prompt, k.seed) for k in workload_keys(workload)] == [("a", 10), ("b", 11), ("a", 12)]
    assert workload_keys(WorkloadConfig(prompts=["a"], seed=None)) == []
    job = Job(3, ("x", "y"), None, 4, 0.0, 128, 128, None)
    assert ReferenceKey.of(job, 1, 99) == ReferenceKey("y", 99, 4, 0.0, 128, 128, None)
    assert ReferenceKey.of(job, 1, 99).job().prompts == ("y",)


def test_sampling_rate_is_reproducible():
    def sampled(rate):
        verifier = Verifier(VerifyConfig(sample_rate=rate), TargetConfig(urls=["localhost:1"]), None)
        return [keep(Job(i, ("a",), (1,), None, None, None, None, None), verifier).verify for i in range(1000)]
    assert all(sampled(1.0))
    assert sampled(0.25) == sampled(0.25) and 245 <= sum(sampled(0.25)) <= 255
    picked = [i for i, chosen in enumerate(sampled(0.25)) if chosen]
    assert picked[0] < 8 and max(b - a for a, b in zip(picked, picked[1:])) <= 8  # never 1/rate twice over
    assert len({b - a for a, b in zip(picked, picked[1:])}) > 3  # at random positions, not a fixed stride


def test_verify_section_parses_and_validates():
    base = {"workload": {"prompts": ["a"]}, "phases": [{"executor": "constant-concurrency", "concurrency": 1,
                                                        "requests": 1}]}
    assert parse_scenario(base).verify.enabled
    assert not parse_scenario(base | {"verify": False}).verify.enabled
    assert parse_scenario(base | {"verify": {"sample_rate": 0.1}}).verify.sample_rate == 0.1
    with pytest.raises(ValueError) as caught:
        parse_scenario(base | {"verify": {"sample_rate": 2, "colour": 1}})
    assert any(p.startswith("verify.sample_rate: must be a fraction") for p in caught.value.problems)
    assert any(p.startswith("verify.colour: unknown key") for p in caught.value.problems)


def test_verify_gate_profiles_and_explicit_thresholds():
    base = {"workload": {"prompts": ["a"]}, "phases": [{"executor": "constant-concurrency", "concurrency": 1,
                                                        "requests": 1}]}
    gate = lambda verify: parse_scenario(base | {"verify": verify}).verify.gate  # noqa: E731
    assert parse_scenario(base).verify.gate == GATES["auto"] and gate({"gate": "exact"}) == GATES["exact"]
    legacy = gate({"pixel_tolerance": 0.004, "min_similarity": 0.95, "min_psnr": None})  # existing keys: explicit
    assert (legacy.name, legacy.pixel_tolerance, legacy.min_similarity, legacy.min_psnr) == ("explicit", 0.004,
                                                                                             0.95, None)
    assert gate({"gate": "explicit", "min_psnr": 35}).min_psnr == 35 and gate({"min_psnr": 35}).min_tile_psnr is None
    problems = {}
    for verify in ({"gate": "strict"}, {"gate": "auto", "min_psnr": 30}, {"gate": "explicit"},
                   {"min_psnr": -1, "max_abs": 2}):
        with pytest.raises(ValueError) as caught:
            parse_scenario(base | {"verify": verify})
        problems[str(verify)] = caught.value.problems
    assert problems["{'gate': 'strict'}"] == ["verify.gate: must be one of auto, exact, explicit, got 'strict'"]
    assert problems["{'gate': 'auto', 'min_psnr': 30}"][0].startswith(
        "verify.min_psnr: is a threshold of gate: explicit; gate 'auto' sets its own")
    assert problems["{'gate': 'explicit'}"][0].startswith("verify.gate: explicit needs at least one threshold")
    assert problems["{'min_psnr': -1, 'max_abs': 2}"] == ["verify.min_psnr: must be in (0, 1000) dB, got -1",
                                                          "verify.max_abs: must be in [0, 1) (images are in [0, "
                                                          "1]), got 2"]


async def test_fake_targets_turn_verification_off_with_a_note():
    verifier = Verifier(VerifyConfig(), TargetConfig(urls=["fake://?latency=1ms"]), None)
    await verifier.open()
    assert not verifier.enabled and "fake" in verifier.summary()["note"]


def test_a_defective_image_is_counted_saved_and_reported_as_valid_json(tmp_path):
    """A NaN image goes through the verifier's own path: a mismatch naming the defect, viewable PNGs, and a summary
    that strict JSON accepts (no infinities), with the worst scores taken over real images only."""
    import json

    verifier = Verifier(VerifyConfig(), TargetConfig(urls=["localhost:1"]), tmp_path)
    job = Job(0, ("a", "b"), (1, 2), 2, 0.0, 32, 32, None)
    for item in range(2):
        verifier._references[ReferenceKey.of(job, item, item + 1)] = IMAGE
    verifier._compare_and_save("p", job, 0, ReferenceKey.of(job, 0, 1), np.clip(IMAGE + _noise_at(50), 0, 1))
    broken = IMAGE.copy()
    broken[0, 0, 0] = np.nan
    verifier._compare_and_save("p", job, 1, ReferenceKey.of(job, 1, 2), broken)
    summary = json.loads(json.dumps(verifier.summary(), allow_nan=False))
    example = summary["mismatch_examples"][0]
    assert summary["checked"] == 2 and summary["mismatches"] == 1
    assert example["reasons"] == ["1 NaN or infinite values"] and example["max_abs"] is None
    assert {Path(f).name for f in example["files"]} == {"reference.png", "received.png", "difference.png", "meta.json"}
    assert summary["worst"]["min_psnr"] == pytest.approx(50, abs=1) == summary["worst_passing"]["min_psnr"]
    verifier._pool.shutdown()


def test_edge_tiles_of_sizes_not_a_multiple_of_the_tile_are_scored_over_their_own_pixels():
    """720 = 22.5 tiles: an error filling the last 16-pixel strip scores as badly as the same error in a whole tile."""
    reference = RNG.random((3, 64, 720), dtype=np.float32)
    edge, inner = reference.copy(), reference.copy()
    edge[:, :32, 704:] = np.clip(edge[:, :32, 704:] + 0.1, 0, 1)
    inner[:, :32, :16] = np.clip(inner[:, :32, :16] + 0.1, 0, 1)
    inner[:, :32, 16:32] = np.clip(inner[:, :32, 16:32] + 0.1, 0, 1)  # a whole 32x32 tile, same error density
    edge_tile = compare(edge, reference, AUTO).scores.tile_psnr
    inner_tile = compare(inner, reference, AUTO).scores.tile_psnr
    assert edge_tile == pytest.approx(inner_tile, abs=0.5) and edge_tile < AUTO.min_tile_psnr


def test_thresholds_must_be_finite():
    base = {"workload": {"prompts": ["a"]}, "phases": [{"executor": "constant-concurrency", "concurrency": 1,
                                                        "requests": 1}]}
    with pytest.raises(ValueError) as caught:
        parse_scenario(base | {"verify": {"min_psnr": float("inf")}})
    assert caught.value.problems == ["verify.min_psnr: must be in (0, 1000) dB, got inf"]
