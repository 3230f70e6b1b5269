"""Image comparison gates, reference keys and sampling (no server)."""

from __future__ import annotations

import numpy as np
import pytest

from flux_async.scenario import TargetConfig, VerifyConfig, WorkloadConfig, parse_scenario
from flux_async.verify import ReferenceKey, Verifier, compare, keep, workload_keys
from flux_async.workload import Job

RNG = np.random.default_rng(0)
IMAGE = RNG.random((3, 32, 32), dtype=np.float32)


def test_identical_images_pass_with_no_psnr():
    result = compare(IMAGE, IMAGE.copy(), VerifyConfig())
    assert result.ok and result.max_abs == 0 and result.psnr is None and result.similarity == 1.0


def test_rounding_noise_passes_and_a_swapped_image_fails():
    noisy = IMAGE + RNG.normal(0, 1e-4, IMAGE.shape).astype(np.float32)
    assert compare(noisy, IMAGE, VerifyConfig()).ok
    other = RNG.random((3, 32, 32), dtype=np.float32)
    result = compare(other, IMAGE, VerifyConfig())
    assert not result.ok and result.similarity < 0.05 and "similarity" in result.reasons[0]


def test_similarity_gate_counts_pixels_not_channels():
    changed = IMAGE.copy()
    changed[0, :4, :] += 0.5  # 4 of 32 rows differ in one channel: 12.5 % of pixels
    result = compare(changed, IMAGE, VerifyConfig(min_similarity=0.9))
    assert result.similarity == pytest.approx(0.875) and not result.ok
    assert compare(changed, IMAGE, VerifyConfig(min_similarity=0.8)).ok


def test_optional_max_abs_and_psnr_gates():
    shifted = IMAGE + 0.003
    assert compare(shifted, IMAGE, VerifyConfig()).ok
    assert "max abs" in compare(shifted, IMAGE, VerifyConfig(max_abs=0.001)).reasons[0]
    assert "PSNR" in compare(shifted, IMAGE, VerifyConfig(min_psnr=60)).reasons[0]


def test_shape_mismatch_fails():
    result = compare(IMAGE[:, :16], IMAGE, VerifyConfig())
    assert not result.ok and "shape" in result.reasons[0]


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
    assert sampled(0.25) == sampled(0.25) and 200 < sum(sampled(0.25)) < 300


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


async def test_fake_targets_turn_verification_off_with_a_note():
    verifier = Verifier(VerifyConfig(), TargetConfig(urls=["fake://?latency=1ms"]), None)
    await verifier.open()
    assert not verifier.enabled and "fake" in verifier.summary()["note"]
