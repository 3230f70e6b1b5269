"""The HTML report's verdict, spectrum and page structure, from reports made by the engine (no browser here:
tests/integration/test_html_report.py opens the pages in Chromium)."""

import copy
import json

from flux_async.measure.recorder import new_histogram, stat_ms
from flux_async.report.hlog import read_log
from flux_async.report.html import hlog_spectrum, render_html, verdict_reasons


def test_the_verdict_names_every_failed_check():
    report = {"thresholds": [{"expr": "p(99) < 2s", "value": 2500.0, "ok": False},
                             {"expr": "error_rate < 1%", "value": 0.0, "ok": True, "phase": "steady"}],
              "verification": {"enabled": True, "checked": 40, "mismatches": 3, "unstable_references": []},
              "interrupted": True, "stop_reason": "target lost: not live for 5 s", "histogram_overflow": 0,
              "faults": [{"action": "unload", "model": "t5_encoder", "error": "reverting: timeout"}]}
    reasons = verdict_reasons(report)
    assert reasons == ["threshold p(99) < 2s not met: observed 2.50s",
                       "3 of 40 images differ from their single-prompt runs",
                       "the run was interrupted: target lost: not live for 5 s",
                       "fault unload t5_encoder: reverting: timeout"]


def test_a_passing_run_says_what_it_passed():
    report = {"thresholds": [{"expr": "p(99) < 2s", "value": 900.0, "ok": True}],
              "verification": {"enabled": True, "checked": 12, "mismatches": 0}}
    assert verdict_reasons(report) == ["all 1 thresholds met; 12 images verified against their single runs"]


def test_capacity_verdicts():
    section = {"max_rate_per_s": 0.0, "slo": ["p(99) < 2s"], "interrupted": False, "bounded_by": "slo"}
    assert verdict_reasons({"kind": "capacity", "capacity": section}) == ["no load met the SLO (p(99) < 2s)"]
    section["max_rate_per_s"] = 12.5
    assert verdict_reasons({"kind": "capacity", "capacity": section})[0].startswith("capacity 12.5 requests/s")
    # capacity --cluster: a lost agent is a reason too, unless the scenario allowed it
    loss = {"agent": 1, "address": "10.0.0.2", "step": 3, "at_s": 1.5, "reason": "ActorDiedError: node died"}
    lost = {"kind": "capacity", "capacity": section, "agent_losses": [loss],
            "cluster": {"on_agent_loss": None}}
    assert verdict_reasons(lost)[1] == "agent 1 on 10.0.0.2 lost in step 3 after 1.5 s: ActorDiedError: node died"
    lost["cluster"]["on_agent_loss"] = "continue"
    assert len(verdict_reasons(lost)) == 1


def fake_run(tmp_path, stall: bool):
    """A real engine run against the fake target (no server): report and .hlog. (Without the stall it is the session's
    client_run, which the tests that only read it share.)"""
    import subprocess
    import sys

    url = "fake://?latency=5ms" + ("&stall_at=1.5s&stall=300ms" if stall else "")
    (tmp_path / "s.yaml").write_text(
        f"name: fake\ntarget: {{url: '{url}'}}\nverify: false\nworkload: {{prompts: [a], size: 64x64}}\n"
        "phases:\n  - {name: warm, executor: constant-arrival-rate, rate: 20/s, duration: 1s, warmup: true}\n"
        "  - {name: steady, executor: constant-arrival-rate, rate: 40/s, duration: 2s}\n"
        "thresholds: ['p(99) < 100ms']\n")
    subprocess.run([sys.executable, "-m", "flux_async", "run", str(tmp_path / "s.yaml"), "--no-progress", "--report",
                    str(tmp_path / "r.json"), "--hlog", str(tmp_path / "r.hlog")], capture_output=True, timeout=120)
    return json.loads((tmp_path / "r.json").read_text())


def test_the_spectrum_from_the_hlog_is_the_measured_phases_histogram(client_run):
    """The session's client_run (tests/unit/conftest.py): the same scenario as fake_run's, without the stall."""
    report = client_run.report
    spectrum = hlog_spectrum(report, client_run.hlog)
    steady = new_histogram()
    for _, _, tag, histogram in read_log(client_run.hlog):
        if tag == "steady:latency":  # warm-up left out, as in the report's figures
            steady.add(histogram)
    assert len(spectrum["latency"]) > 40
    for percentile, value in spectrum["latency"][::10]:
        assert value == stat_ms(steady, f"p{percentile}")
    assert spectrum["latency"][-1][1] <= report["latency_ms"]["max"]


def test_a_failed_run_renders_its_reasons_and_every_chart(tmp_path):
    report = fake_run(tmp_path, stall=True)
    html = render_html(report, tmp_path / "r.hlog")
    assert not report["passed"] and "FAILED" in html and "threshold p(99) &lt; 100ms not met" in html
    for chart in ("latency", "spectrum", "throughput", "lag"):
        assert f'data-chart="{chart}"><svg' in html
    assert html.count("<svg") == 4 and "GPU memory:" in html  # no GPU here: said in words, no empty chart


def test_reports_older_than_the_tester_verdict_still_render(client_run):
    """A saved report whose `client` predates the verdict keys, and a capacity search that ran no step."""
    report = copy.deepcopy(client_run.report)
    report["client"] = {"cpu_s": 0.5, "cpu_us_per_request": 120.0, "rss_mb_start": 50.0, "rss_mb_end": 51.0,
                        "event_loop": "uvloop"}
    html = render_html(report)
    assert "120 µs CPU per request" in html and "busiest interval" not in html and 'id="tester-warning"' not in html
    capacity = {"kind": "capacity", "version": 1, "scenario": "s", "target": report["target"], "passed": False,
                "started_at": report["started_at"], "client": None, "verification": {"enabled": False},
                "capacity": {"mode": "rate", "max_rate_per_s": 0.0, "max_images_per_s": 0.0, "steps": [],
                             "slo": ["p(99) < 2s"], "slo_limits_ms": [2000.0], "bounded_by": "not found",
                             "interrupted": True, "knee": None, "lowest_failing_load": None}}
    assert "µs CPU per request" not in render_html(capacity)
    # a search over cluster agents lists them, and a step with a lost agent reads as run again
    step = {"step": 1, "mode": "rate", "load": 4.0, "repeat": 1, "warmup": False, "passed": True, "slo": [],
            "partial": "agent 1 lost: ActorDiedError", "achieved_requests_per_s": 3.9, "throughput": {
                "images_per_s": 3.9}, "latency_ms": {"p50": 100.0, "p99": 200.0},
            "requests": {"errors": 0, "dropped": 0}, "verification": {"checked": 0, "mismatches": 0}}
    agent = {"agent": 0, "node": "ab" * 20, "address": "10.0.0.1", "host": "h", "share": "0/2", "client_cpu_s": 1.0,
             "requests": {"sent": 40, "ok": 40, "errors": 0, "dropped": 0}, "clock_offset_ms": 0.2,
             "clock_uncertainty_ms": 0.1, "lost": None}
    html = render_html({**capacity, "capacity": {**capacity["capacity"], "steps": [step]}, "agents": [agent],
                        "cluster": {"address": "ray://head:10001", "agents": 2, "nodes": 2}})
    assert 'id="agent-table"' in html and "capacity --cluster" in html and "partial: ran again" in html
