"""Other deployments end to end: the models of examples/ (Triton's tutorial shape, UINT8 NHWC with a dynamic batcher;
the community shape, one PNG per request) loaded beside `bls` on the session server, `inspect` writing a scenario
for each, and runs of those scenarios verifying every batched image against its single run. A wrapper that swaps
the items of a batch is caught (exit 1), a contract naming a missing tensor and a model that is not text-to-image
exit 2, an unreachable server exits 3, and a model that takes no seed is run with verification off and says why."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from flux_async.cli import main
from flux_async.errors import ContractMismatch
from flux_async.testing.model_swap import load_from_folder, swap_in, unload

ROOT = Path(__file__).resolve().parents[2]
TUTORIAL = ROOT / "examples/triton_tutorial/text2image"
PNG_BYTES = ROOT / "examples/png_bytes/flux_png"
# small images and two steps keep each run to seconds on the tiny weights
SMALL = {"parameters": {"steps": {"string_value": "2"}, "height": {"string_value": "64"},
                        "width": {"string_value": "64"}}}
SEEDLESS = {**SMALL, "name": "flux_png_seedless",
            "input": [{"name": "PROMPT", "data_type": "TYPE_STRING", "dims": ["1"]}]}


@pytest.fixture(scope="module")
def deployments(triton_server):
    """The examples loaded onto the session server (explicit model control), unloaded after the module."""
    names = [load_from_folder(triton_server.http_url, TUTORIAL, SMALL),
             load_from_folder(triton_server.http_url, PNG_BYTES, SMALL),
             load_from_folder(triton_server.http_url, PNG_BYTES, SEEDLESS)]
    yield triton_server
    for name in names:
        unload(triton_server.http_url, name)


def inspect_scenario(url: str, model: str, folder: Path) -> tuple[dict, str]:
    """`inspect URL --model MODEL --write-scenario FILE` → the scenario, with a short phase, and the file's text."""
    path = folder / f"{model}.yaml"
    assert main(["inspect", url, "--model", model, "--write-scenario", str(path)]) == 0
    scenario = yaml.safe_load(path.read_text())
    scenario["phases"] = [{"name": "batched", "executor": "constant-concurrency", "concurrency": 4, "requests": 8}]
    return scenario, path.read_text()


@pytest.fixture(scope="module")
def scenarios(deployments, tmp_path_factory):
    """What inspect writes for each of the three models."""
    folder = tmp_path_factory.mktemp("inspect")
    return {model: inspect_scenario(url, model, folder)
            for url, model in ((f"http://{deployments.http_url}", "text2image"),
                               (f"grpc://{deployments.grpc_url}", "flux_png"),
                               (f"grpc://{deployments.grpc_url}", "flux_png_seedless"))}


def test_inspect_lists_the_text_to_image_models(deployments, capsys):
    assert main(["inspect", f"http://{deployments.http_url}"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if "READY" in line}
    for model in ("bls", "text2image", "flux_png", "flux_png_seedless"):
        assert "yes" in rows[model], rows
    for model in ("clip_encoder", "t5_encoder", "vae_decoder"):
        assert "no:" in rows[model], rows


def test_the_written_contracts_describe_each_shape(scenarios):
    tutorial, text = scenarios["text2image"]
    assert tutorial["target"]["contract"]["outputs"]["images"] == {
        "name": "generated_image", "datatype": "UINT8", "format": "tensor", "layout": "NHWC", "range": "0..255"}
    assert tutorial["target"]["contract"]["max_prompts"] == 4 and tutorial["verify"]["enabled"]
    assert "seed (seed = 0)" in text.split("\n")[1]  # the header names what the server fixes
    png, _ = scenarios["flux_png"]
    assert png["target"]["contract"]["inputs"]["seed"] == {"name": "SEED", "datatype": "INT64", "shape": "[1]"}
    assert png["target"]["contract"]["outputs"]["images"]["format"] == "png" and png["verify"]["enabled"]
    seedless, text = scenarios["flux_png_seedless"]
    assert not seedless["verify"]["enabled"] and "verification is off: the model takes no seed" in text


@pytest.mark.parametrize("model", ["text2image", "flux_png"])
async def test_written_scenarios_run_and_verify(model, scenarios, run_scenario):
    scenario, _ = scenarios[model]
    report = await run_scenario(scenario)
    assert report["exit_code"] == 0 and report["passed"], report["output"]
    assert report["requests"]["ok"] == 8
    verification = report["verification"]
    assert verification["enabled"] and verification["mismatches"] == 0 and verification["checked"] >= 8


async def test_a_seedless_model_runs_with_verification_off_and_says_why(scenarios, run_scenario):
    scenario, _ = scenarios["flux_png_seedless"]
    report = await run_scenario({**scenario, "verify": {"enabled": True}})
    assert report["exit_code"] == 0 and report["requests"]["ok"] == 8
    assert not report["verification"]["enabled"] and "takes no seed" in report["verification"]["note"]


async def test_a_wrapper_that_swaps_batch_items_fails_verification(deployments, scenarios, run_scenario, tmp_path):
    source = (TUTORIAL / "1/model.py").read_text()
    broken = source.replace("images = self.generate(prompts)", "images = self.generate(prompts)[::-1]")
    assert broken != source
    (tmp_path / "model.py").write_text(broken)
    swap_in(deployments.http_url, "text2image", tmp_path / "model.py")
    try:
        scenario, _ = scenarios["text2image"]
        report = await run_scenario(scenario)
    finally:
        load_from_folder(deployments.http_url, TUTORIAL, SMALL)
    assert report["exit_code"] == 1 and not report["passed"]
    assert report["verification"]["mismatches"] > 0, report["output"]


async def test_a_contract_naming_a_missing_tensor_exits_2(scenarios, run_scenario):
    scenario, _ = scenarios["text2image"]
    contract = scenario["target"]["contract"]
    wrong = {**contract, "outputs": {**contract["outputs"], "images": {**contract["outputs"]["images"],
                                                                        "name": "image"}}}
    with pytest.raises(ContractMismatch) as error:
        await run_scenario({**scenario, "target": {**scenario["target"], "contract": wrong}})
    assert error.value.exit_code == 2
    assert "output 'image' (images): model 'text2image' has no such output; its outputs: generated_image" in str(
        error.value)


def test_inspect_of_a_model_that_is_not_text_to_image_exits_2(deployments, capsys):
    assert main(["inspect", f"grpc://{deployments.grpc_url}", "--model", "clip_encoder"]) == 2
    assert "model 'clip_encoder' does not look like text-to-image" in capsys.readouterr().err


def test_inspect_of_an_unreachable_server_exits_3(capsys):
    assert main(["inspect", "http://127.0.0.1:1"]) == 3
    printed = capsys.readouterr()
    assert "127.0.0.1:1" in printed.out + printed.err


async def test_images_that_cannot_be_decoded_are_bad_responses_naming_the_output(run_scenario):
    """bls's raw UINT8 pixels read as if they were PNG files: every request is a `bad_response` whose message names
    the output and element; the run ends with its report and the server keeps serving."""
    contract = {"inputs": {"prompt": {"name": "prompt", "datatype": "BYTES", "shape": "[B]"},
                           "seed": {"name": "seed", "datatype": "INT64", "shape": "[B]"},
                           "steps": {"name": "num_inference_steps", "datatype": "INT32", "shape": "[1]"},
                           "height": {"name": "height", "datatype": "INT32", "shape": "[1]"},
                           "width": {"name": "width", "datatype": "INT32", "shape": "[1]"}},
                "constants": [{"name": "image_encoding", "datatype": "BYTES", "shape": "[1]", "value": "uint8"}],
                "outputs": {"images": {"name": "images_uint8", "datatype": "UINT8", "format": "png"}}}
    scenario = {"name": "undecodable", "target": {"model": "bls", "contract": contract},
                "workload": {"prompts": ["a red bicycle", "a paper boat"], "prompts_per_request": 2, "seed": 5,
                             "steps": 1, "size": "64x64"},
                "phases": [{"name": "load", "executor": "constant-concurrency", "concurrency": 2, "requests": 4}]}
    report = await run_scenario(scenario)
    assert report["exit_code"] == 1 and report["errors_by_kind"] == {"bad_response": 4}
    assert report["error_examples"]["bad_response"].startswith(
        "output images_uint8[0]: not a decodable PNG or JPEG image (12288 bytes"), report["error_examples"]
    assert "first bad_response: output images_uint8[0]" in report["output"]
    contract["constants"][0]["value"] = "png"
    contract["outputs"]["images"] = {"name": "images_png", "datatype": "BYTES", "format": "png"}
    report = await run_scenario(scenario)  # the same server, the contract fixed: every image decodes and verifies
    assert report["exit_code"] == 0 and report["verification"]["checked"] >= 8, report["output"]
