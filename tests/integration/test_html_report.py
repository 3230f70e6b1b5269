"""The HTML report: `run --html` and `report html` make one self-contained page that headless Chromium renders
without console errors, with the verdict, the charts, the phases and their stage charts, readable at 1280x800."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flux_async.testing.browser import external_references

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "flux_async", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def burst_folder(burst_run) -> Path:
    """scenarios/burst.yaml for a few seconds against the session server, with every output (the session's burst_run,
    tests/integration/conftest.py, which test_run_scenarios reads too)."""
    assert burst_run.result.returncode == 0, burst_run.result.stdout + burst_run.result.stderr
    return burst_run.folder


def check_run_page(page: dict, report: dict) -> None:
    assert page["errors"] == [] and page["fetched"] == []
    assert page["verdict"] == "PASSED" and page["reasons"][0].startswith("all ")
    charts = dict(page["charts"])
    assert {"latency", "spectrum", "throughput", "lag", "stages"} <= set(charts)
    assert all(width > 300 for _, width in page["charts"]), page["charts"]  # drawn, and not squeezed
    assert page["sections"] == ["summary", "charts", "phases", "thresholds-and-checks"]
    assert page["phases"] == [p["name"] for p in report["phases"]]
    assert page["phaseRows"] == len(report["phases"]) + 1 and page["thresholdRows"] == len(report["thresholds"])
    assert page["counts"]["count-sent"] == str(report["requests"]["sent"])
    assert page["counts"]["count-verified"] == str(report["verification"]["checked"])
    assert page["scrollWidth"] <= 1280  # nothing wider than the window


async def test_run_writes_a_page_that_reads_in_a_browser(burst_folder, inspect_html):
    html = (burst_folder / "r.html").read_text()
    assert external_references(html) == []
    report = json.loads((burst_folder / "r.json").read_text())
    page = await inspect_html(burst_folder / "r.html", "html-report-run")
    check_run_page(page, report)
    assert sum(1 for name, _ in page["charts"] if name == "stages") == len(report["phases"])
    gate = report["verification"]["gate"]
    assert page["gate"].startswith(f"Gate {gate['description']}")  # the gate in force and how close images came
    assert f"Passing images: {report['verification']['gate_explained']}" in page["gate"]


async def test_report_html_renders_a_saved_run(burst_folder, inspect_html):
    result = run_cli("report", "html", str(burst_folder / "r.json"), "--hlog", str(burst_folder / "r.hlog"), "--output",
                     str(burst_folder / "saved.html"), timeout=120)
    assert result.returncode == 0, result.stderr
    html = (burst_folder / "saved.html").read_text()
    assert external_references(html) == []
    assert "from r.hlog" in html  # the spectrum comes from the interval log
    page = await inspect_html(burst_folder / "saved.html", "html-report-saved")
    check_run_page(page, json.loads((burst_folder / "r.json").read_text()))
    assert "rendered from r.json" in page["footer"]


@pytest.mark.parametrize("content, message", [
    (None, "no such file"), ("{not json", "is not JSON"), ('{"a": 1}', "is not a flux_async report")])
def test_report_html_rejects_what_is_not_a_report(tmp_path, content, message):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    result = run_cli("report", "html", str(path), timeout=120)
    assert result.returncode == 2 and message in result.stderr and str(path) in result.stderr
    assert not (tmp_path / "r.html").exists()
