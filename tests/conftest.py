"""Shared fixtures: the tiny weights, the reference FluxPipeline, and one real Triton server per test session."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "test-artifacts"


def pytest_itemcollected(item):
    """The tests on the local Ray cluster in one pytest-xdist group (one cluster, on one worker), as the plugin groups
    those on the session's Triton (`-n 2 --dist loadgroup` in pyproject.toml: the two run side by side)."""
    if "ray_cluster" in item.fixturenames and "flux_server" not in item.fixturenames:
        item.add_marker(pytest.mark.xdist_group("ray_cluster"))


def pytest_collection_finish(session):
    """On a pytest-xdist worker: stop at once if a group would not stay on one worker (each worker would start its own
    FLUX server and Ray cluster); a pytest that ignores xdist's group ids did (pytest-xdist#1386)."""
    if getattr(session.config.option, "loadgroup", False):
        loose = [i.nodeid for i in session.items if any(i.iter_markers("xdist_group")) and "@" not in i.nodeid]
        if loose:
            raise pytest.UsageError(f"pytest-xdist did not group {len(loose)} tests (e.g. {loose[0]}): this pytest "
                                    "ignores xdist_group; use the locked versions (uv sync)")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A fresh tiny FLUX.1-schnell pipeline folder, built through `make-tiny-flux`'s code."""
    from flux_async.pipeline.tiny import make_tiny_flux

    return make_tiny_flux(tmp_path_factory.mktemp("weights") / "tiny-flux-schnell")


@pytest.fixture(scope="session")
def tiny_dev_weights(tmp_path_factory) -> Path:
    """A tiny FLUX.1-dev pipeline (guidance embedding, dynamic shift)."""
    from flux_async.pipeline.tiny import make_tiny_flux

    return make_tiny_flux(tmp_path_factory.mktemp("weights") / "tiny-flux-dev", variant="dev")


@pytest.fixture(scope="session")
def reference_images(tiny_weights):
    """`(prompt, seed, steps, guidance, height, width, max_sequence_length) -> [3, H, W]` from FluxPipeline."""
    return make_reference(tiny_weights)


@pytest.fixture(scope="session")
def reference_factory():
    """`make_reference` for other weights folders."""
    return make_reference


def make_reference(weights: Path):
    """A cached function that runs `FluxPipeline.from_pretrained(weights)` for one prompt and seed."""
    import torch
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(weights)
    pipe.set_progress_bar_config(disable=True)

    @functools.cache
    def reference(prompt: str, seed: int, steps: int = 4, guidance: float = 0.0, height: int = 128, width: int = 128,
                  max_sequence_length: int = 256) -> np.ndarray:
        images = pipe(prompt=prompt, generator=torch.Generator("cpu").manual_seed(seed), num_inference_steps=steps,
                      guidance_scale=guidance, height=height, width=width, max_sequence_length=max_sequence_length,
                      output_type="pt").images
        return images[0].float().numpy()

    reference.pipe = pipe
    return reference


@pytest.fixture(scope="session")
def flux_weights(request):
    """The plugin's `flux_server` serves this session's fresh tiny weights (unless it is given a running server)."""
    if request.config.getoption("--flux-http-url"):
        return None
    return str(request.getfixturevalue("tiny_weights"))


@pytest.fixture(scope="session")
def triton_server(flux_server):
    """One real tritonserver (bundled binary) with triton_models/ on the tiny weights, on free ports, shared by the
    whole session (flux_async's pytest plugin starts it); explicit model control, so tests can swap models."""
    return flux_server


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


PAGE_SUMMARY = """JSON.stringify({
  title: document.title,
  verdict: document.querySelector('#verdict h1')?.textContent,
  reasons: [...document.querySelectorAll('#reasons li')].map(li => li.textContent),
  charts: [...document.querySelectorAll('figure.chart')].map(f => [f.dataset.chart,
          Math.round(f.querySelector('svg')?.getBoundingClientRect().width || 0)]),
  sections: [...document.querySelectorAll('main > section')].map(s => s.id),
  phases: [...document.querySelectorAll('.phase')].map(p => p.dataset.phase),
  phaseRows: document.querySelectorAll('#phase-table tr').length - 1,
  thresholdRows: document.querySelectorAll('#thresholds tr').length - 1,
  capacityRows: document.querySelectorAll('#capacity-steps tr').length - 1,
  gallery: [...document.querySelectorAll('.mismatch')].map(m => [...m.querySelectorAll('img')].map(
          i => i.complete && i.naturalWidth > 0)),
  counts: Object.fromEntries([...document.querySelectorAll('.fact .value[id]')].map(v => [v.id, v.textContent])),
  gate: document.querySelector('#verification-gate')?.textContent,
  mismatchNotes: [...document.querySelectorAll('.mismatch .bad')].map(b => b.textContent),
  footer: document.querySelector('footer')?.textContent,
  fetched: performance.getEntriesByType('resource').map(r => r.name).filter(n => !n.startsWith('data:')),
  scrollWidth: document.documentElement.scrollWidth,
})"""


@pytest.fixture
def inspect_html(artifacts):
    """`await inspect_html(path, name)`: open the page in headless Chromium at 1280x800, save a screenshot as
    test-artifacts/<name>.png, and return the rendered page's summary (PAGE_SUMMARY) with its console errors."""
    import json

    from flux_async.testing.browser import HeadlessChromium

    async def inspect(path: Path, name: str) -> dict:
        async with HeadlessChromium(1280, 800) as browser:
            page = await browser.open(path, screenshot=artifacts / f"{name}.png")
            summary = json.loads(await page.evaluate(PAGE_SUMMARY))
        summary["errors"] = page.errors
        return summary

    return inspect

