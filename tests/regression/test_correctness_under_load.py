"""The regression suite: short scenarios through the engine's Python API against the real server, asserting
thresholds and zero mismatches — and proof that verification catches broken batching and leaking state.

Run alone: `uv run pytest tests/regression` (add --run-slow for the full-length scenario).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flux_async.testing.model_swap import restore, swap_in

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "fixtures" / "broken_models"
NOISY = ROOT / "tests" / "fixtures" / "noisy_models"
WIDE_BATCHING_WINDOW = {"dynamic_batching": {"max_queue_delay_microseconds": 100_000}}

SINGLE_PROMPTS = {  # single-prompt requests only: whatever is batched, Triton batched it across requests
    "name": "cross-request",
    "workload": {"prompts": ["A red bicycle", "A lighthouse at dusk", "A bowl of ramen", "A snowy forest"],
                 "seed": 77, "steps": 2, "size": "128x128"},
    "phases": [{"name": "together", "executor": "constant-concurrency", "concurrency": 4, "requests": 16}],
}

MULTI_PROMPTS = {  # requests of 2 and 3 prompts: what bls batches itself
    "name": "multi-prompt",
    "workload": {"prompts": ["A red bicycle", "A lighthouse at dusk", "A bowl of ramen"], "seed": 91, "steps": 2,
                 "size": "128x128", "prompts_per_request": {2: 1, 3: 1}},
    "phases": [{"name": "pairs-and-triples", "executor": "constant-concurrency", "concurrency": 2, "requests": 6}],
}
# dit_swap's images on the tiny weights sometimes stay within the gate (they depend little on the denoiser, README
# "Verification gates"): twelve requests make a run with no failing image as unlikely as the other bugs' runs
MULTI_PROMPTS_LONGER = dict(MULTI_PROMPTS, phases=[dict(MULTI_PROMPTS["phases"][0], requests=12)])
SCENARIOS = {"single": SINGLE_PROMPTS, "multi": MULTI_PROMPTS}


class ServedModels:
    """Which models of the session server are swapped for the test at hand. `serve(name=(model_py, config_changes))`
    leaves exactly those swapped in over the repository's models: a model swapped for an earlier test and not named is
    restored, and one already swapped as asked is not loaded again. A load costs 8-12 s on 2 cores (dit_transformer,
    bls): the tests below are ordered so that those of one model follow each other, and load it once each."""

    def __init__(self, http_url: str):
        self.http_url = http_url
        self.swapped: dict[str, tuple | None] = {}  # None: a swap that did not load (reload or restore it)

    def serve(self, **swaps: tuple[Path | None, dict | None]) -> None:
        for name in [name for name in self.swapped if name not in swaps]:
            restore(self.http_url, name)
            del self.swapped[name]
        for name, swap in swaps.items():
            if self.swapped.get(name, ()) != swap:
                self.swapped[name] = None  # restored later even if the load fails
                swap_in(self.http_url, name, *swap)
                self.swapped[name] = swap


@pytest.fixture(scope="module")
def served(flux_server):
    """This module's `ServedModels`; at its end the repository's models again, for the rest of the session."""
    models = ServedModels(flux_server.http_url)
    yield models
    models.serve()


def assert_caught(report: dict, exit_code: int, output: str) -> None:
    """A run against a broken repository fails (exit 1) under the auto gate; its first mismatch is below the gate's
    PSNR, named on the console with its prompt and seed, and saved as reference, received and difference PNGs."""
    verification = report["verification"]
    assert not report["passed"] and exit_code == 1, output
    assert verification["mismatches"] > 0, output
    example = verification["mismatch_examples"][0]
    assert verification["gate"]["name"] == "auto" and example["psnr"] < verification["gate"]["min_psnr"]
    assert example["prompt"] and example["seed"] >= 0 and re.match(r"(32x32-tile )?PSNR ", example["reasons"][0])
    assert f"seed {example['seed']}" in output and "MISMATCH" in output
    assert {"reference.png", "received.png", "difference.png", "meta.json"} == {Path(f).name
                                                                                 for f in example["files"]}


async def test_burst_scenario_is_correct_under_load(run_scenario, served):
    served.serve()
    report = await run_scenario(ROOT / "scenarios" / "burst.yaml", duration_s=4)
    verification = report["verification"]
    assert report["passed"] and report["exit_code"] == 0, report["output"]
    assert verification["enabled"] and verification["checked"] >= report["images"]["ok"] > 0
    assert verification["mismatches"] == 0 and verification["unchecked"] == 0
    assert {p["name"]: p["verification"]["checked"] > 0 for p in report["phases"]} == {"warm-up": True,
                                                                                          "bursts": True}


async def test_requests_batched_together_by_triton_are_each_correct(run_scenario, served):
    served.serve(dit_transformer=(None, WIDE_BATCHING_WINDOW))
    report = await run_scenario(SINGLE_PROMPTS)
    assert report["passed"], report["output"]
    assert report["verification"]["checked"] == 16 and report["verification"]["mismatches"] == 0


async def test_the_cli_turns_red_when_batch_items_are_swapped(served, flux_server, tmp_path, inspect_html):
    """`python -m flux_async run` against a repository whose dit swaps items 0 and 1 of every batch (requests of 2-3
    prompts; dit_swap's case of the broken-repository test below, through the command line): exit 1, what every
    caught bug shows (assert_caught), a console line naming the prompt, the seed and the difference, and an HTML page
    showing the images."""
    served.serve(dit_transformer=(BROKEN / "dit_swap" / "model.py", WIDE_BATCHING_WINDOW))
    (tmp_path / "multi.yaml").write_text(yaml.safe_dump(MULTI_PROMPTS_LONGER))
    result = subprocess.run([sys.executable, "-m", "flux_async", "run", str(tmp_path / "multi.yaml"), "--url",
                             flux_server.grpc_url, "--no-progress", "--report", str(tmp_path / "r.json"),
                             "--html", str(tmp_path / "r.html")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = json.loads((tmp_path / "r.json").read_text())
    assert_caught(report, result.returncode, result.stdout + result.stderr)
    line = next(line for line in result.stdout.splitlines() if line.startswith("MISMATCH"))
    assert "prompt '" in line and " seed " in line and "max abs diff" in line
    assert (tmp_path / "r-mismatches").is_dir()
    page = await inspect_html(tmp_path / "r.html", "html-report-mismatches")
    saved = [example for example in report["verification"]["mismatch_examples"] if example["files"]]
    assert page["errors"] == [] and page["verdict"] == "FAILED"
    assert any("differ from their single-prompt runs" in reason for reason in page["reasons"])
    assert saved and page["gallery"] == [[True, True, True]] * len(saved)  # reference, received, difference
    assert page["gate"].startswith("Gate auto: PSNR >= 42.0 dB") and "Passing images: worst PSNR" in page["gate"]
    assert page["mismatchNotes"][0].startswith("failed: PSNR ") and "< 42.0 dB" in page["mismatchNotes"][0]
    assert "gate auto: PSNR >= 42.0 dB" in result.stdout and "passing images: worst PSNR" in result.stdout


@pytest.mark.parametrize("bug, model, scenario", [  # dit_swap (batches of 2-3 prompts: items swapped): above
    ("dit_cross", "dit_transformer", "single"),  # requests combined by the batcher get each other's outputs
    ("bls_leak", "bls", "single"),  # the previous request's latents leak into the next
    pytest.param("bls_seed", "bls", "multi", marks=pytest.mark.slow),  # 2nd item from the 1st item's seed
])
async def test_verification_catches_a_broken_repository(bug, model, scenario, run_scenario, served):
    window = WIDE_BATCHING_WINDOW if model == "dit_transformer" else None
    served.serve(**{model: (BROKEN / bug / "model.py", window)})
    report = await run_scenario(SCENARIOS[scenario])
    assert_caught(report, report["exit_code"], report["output"])


async def test_the_default_gate_passes_rounding_and_fails_ten_percent_contamination(run_scenario, served):
    """Both sides of the gate on one server. A correct bls whose batched items carry noise as large as the worst
    measured on a GPU in bf16 passes, although `exact` would not (fewer than 95 % of pixels within 1/255); one that
    blends 10 % of the previous item's image into each later item, which still looks right, fails."""
    served.serve(bls=(NOISY / "bls_bf16_noise" / "model.py", None))
    noisy = await run_scenario(MULTI_PROMPTS)
    served.serve(bls=(BROKEN / "bls_blend" / "model.py", None))
    blended = await run_scenario(MULTI_PROMPTS)
    verification = noisy["verification"]
    assert noisy["passed"] and verification["mismatches"] == 0, noisy["output"]
    assert verification["checked"] >= noisy["images"]["ok"] > 0
    worst = verification["worst_passing"]
    assert worst["min_psnr"] < 50 and worst["min_similarity"] < 0.95  # the noise was there, and exact would fail
    assert verification["margin"]["min_psnr"] > 0 and "worst PSNR" in noisy["output"]
    verification = blended["verification"]
    assert not blended["passed"] and blended["exit_code"] == 1 and verification["mismatches"] > 0
    for example in verification["mismatch_examples"]:
        assert example["item"] > 0 and 25 < example["psnr"] < 42, example  # item 0 is clean; the rest, 10 % off
        assert example["reasons"][0].startswith("PSNR ") or example["reasons"][0].startswith("32x32-tile PSNR ")


@pytest.mark.slow
async def test_full_burst_scenario(run_scenario, served):
    served.serve()
    report = await run_scenario(ROOT / "scenarios" / "burst.yaml")
    assert report["passed"] and report["verification"]["mismatches"] == 0, report["output"]


@pytest.mark.gpu
async def test_gpu_batches_match_single_runs_under_the_default_gate(run_scenario, served):
    """On a GPU in bf16 batched kernels round differently from batch-1 ones: the default gate passes that."""
    served.serve()
    scenario = dict(SINGLE_PROMPTS, workload=dict(SINGLE_PROMPTS["workload"], size="1024x1024", steps=4))
    report = await run_scenario(scenario)
    assert report["passed"] and report["verification"]["checked"] == 16, report["output"]
    assert report["verification"]["gate"]["name"] == "auto"
