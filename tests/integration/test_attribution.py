"""Per-stage attribution: a stage made slow is the one the report says queues first."""

from __future__ import annotations

from pathlib import Path

from flux_async.testing.model_swap import swapped_model

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = {
    "name": "attribution",
    "workload": {"prompts": ["a cat", "a dog", "a red bicycle"], "seed": 5, "steps": 2, "size": "64x64"},
    "verify": False,
    "phases": [{"name": "load", "executor": "constant-concurrency", "concurrency": 4, "requests": 12}],
}


async def test_a_slow_stage_is_named(run_scenario, flux_server):
    with swapped_model(flux_server.http_url, "t5_encoder", ROOT / "tests/fixtures/slow_models/t5_encoder/model.py"):
        report = await run_scenario(SCENARIO)
    phase = report["phases"][0]
    stages = phase["stages"]
    assert phase["first_to_queue"] == "t5_encoder", stages
    assert stages["t5_encoder"]["compute_infer_ms"] >= 300
    assert stages["bls"]["requests"] == 12 and stages["dit_transformer"]["requests"] == 12 * 2  # 2 steps each
    assert "queues first: t5_encoder" in report["output"]


async def test_stage_figures_add_up_without_a_slow_stage(run_scenario):
    report = await run_scenario(SCENARIO)
    stages = report["phases"][0]["stages"]
    assert set(stages) == {"bls", "clip_encoder", "t5_encoder", "dit_transformer", "vae_decoder"}
    for model in ("clip_encoder", "t5_encoder", "vae_decoder"):
        figures = stages[model]
        assert figures["batch_items"] == 12 and figures["failures"] == 0
        assert sum(int(size) * count for size, count in figures["batch_sizes"].items()) == figures["batch_items"]
        assert figures["executions"] == sum(figures["batch_sizes"].values())


async def test_the_report_says_what_each_model_runs(run_scenario, flux_server):
    """The models' `flux_model_settings` gauge, read from Triton's /metrics: on this CPU every speed switch is off."""
    report = await run_scenario(SCENARIO | {"phases": [SCENARIO["phases"][0] | {"requests": 4}]},
                                metrics_url=flux_server.metrics_url)
    assert report["server"]["dit_transformer"] == {"channels_last": "off", "compile": "off",
                                                   "compile_mode": "default", "dtype": "float32", "fuse_qkv": "off",
                                                   "precision": "auto"}
    assert report["server"]["vae_decoder"]["compile"] == "off"
    assert "server: dit_transformer float32; vae_decoder float32" in report["output"]
