"""target.contract: parsing with YAML paths, request tensors per shape convention, decoding every output form, the
check against a model's metadata, and inferring a contract from the tutorial, community and bls shapes."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import yaml

from flux_async.errors import ScenarioError
from flux_async.measure.images import encode_png, to_uint8
from flux_async.scenario.config import parse_scenario
from flux_async.scenario.contract_inference import infer_contract, value_range
from flux_async.scenario.model_contract import (
    BLS,
    Contract,
    ImageOutput,
    InputMap,
    ModelInfo,
    check_contract,
    contract_yaml,
    parse_contract,
)
from flux_async.scenario.reader import Reader
from flux_async.scenario.workload import Job
from flux_async.targets.image_decoding import UndecodableImages, decode_images, image_count, tensor_from_raw
from flux_async.targets.model_info import kserve_datatype, model_info

TUTORIAL = {"inputs": {"prompt": {"name": "prompt", "datatype": "BYTES", "shape": "[B,1]"}},
            "outputs": {"images": {"name": "generated_image", "datatype": "UINT8", "layout": "NHWC"}},
            "max_prompts": 4, "deterministic": True}


def scenario(contract: dict | None, **workload) -> dict:
    target = {"url": "grpc://h:1", "model": "text2image", **({"contract": contract} if contract else {})}
    return {"target": target, "workload": {"prompts": ["a"], **workload},
            "phases": [{"executor": "constant-concurrency", "concurrency": 1, "requests": 1}]}


def job(prompts=("a", "b"), seeds=(1, 2), steps=4) -> Job:
    return Job(0, tuple(prompts), seeds, steps, None, 128, 256, None)


def test_the_tutorial_contract_parses_with_its_defaults():
    contract = parse_scenario(scenario(TUTORIAL)).target.contract
    assert contract.inputs == {"prompt": InputMap("prompt", "BYTES", "[B,1]")}
    assert contract.images == ImageOutput("generated_image", "UINT8", "tensor", "NHWC", "0..255")
    assert contract.max_prompts == 4 and contract.deterministic and contract.seeds is None
    assert contract.unverifiable is None


def test_without_a_contract_the_target_speaks_bls():
    target = parse_scenario(scenario(None)).target
    assert target.contract is None and target.model_contract is BLS


def test_every_contract_problem_is_named_with_its_path():
    bad = {"inputs": {"prompt": {"name": "p", "datatype": "TEXT", "shape": "[N]"}, "colour": "c"},
           "outputs": {"images": {"name": "x", "format": "gif"}}, "max_prompts": 20}
    with pytest.raises(ScenarioError) as error:
        parse_scenario(scenario(bad))
    problems = "\n".join(error.value.problems)
    for expected in ("target.contract.inputs.colour: unknown key", "target.contract.inputs.prompt.datatype: must be "
                     "one of BYTES", "target.contract.inputs.prompt.shape: must be one of [B], [B,1], [1], [1,1]",
                     "target.contract.outputs.images.format: must be one of tensor, png, base64",
                     "target.contract.max_prompts: must be an integer in [1, 8]"):
        assert expected in problems


def test_a_per_request_prompt_allows_one_prompt_per_request():
    one = {"inputs": {"prompt": {"name": "PROMPT", "datatype": "BYTES", "shape": "[1]"}},
           "outputs": {"images": {"name": "GENERATED_IMAGE", "datatype": "BYTES", "format": "png"}}}
    assert parse_scenario(scenario(one)).target.contract.max_prompts == 1
    with pytest.raises(ScenarioError, match=r"workload.prompts_per_request: asks for 2 prompts in a request but "
                                            r"the model's contract takes at most 1"):
        parse_scenario(scenario(one, prompts_per_request=2))
    with pytest.raises(ScenarioError, match="target.model: is required with target.contract"):
        parse_scenario({**scenario(one), "target": {"url": "grpc://h:1", "contract": one}})


def test_a_contract_round_trips_through_its_yaml():
    contract = Contract({"prompt": InputMap("p", "BYTES", "[B,1]"), "seed": InputMap("s", "INT64", "[B,1]")},
                        ImageOutput("img", "FP16", "tensor", "NHWC", "-1..1"), "seeds", 4, False,
                        ((InputMap("mode", "BYTES", "[1]"), "base"),))
    reader = Reader()
    assert parse_contract(reader, contract_yaml(contract), "target.contract") == contract and not reader.problems


@pytest.mark.parametrize("shape, expected", [("[B]", [[b"a", b"b"]], ), ("[B,1]", [[[b"a"], [b"b"]]])])
def test_per_prompt_fields_follow_their_shape(shape, expected):
    contract = Contract({"prompt": InputMap("p", "BYTES", shape)}, ImageOutput("i"))
    assert contract.arrays(job())["p"].tolist() == expected[0]


def test_settings_are_repeated_per_prompt_or_sent_once_and_constants_are_added():
    contract = Contract({"prompt": InputMap("p", "BYTES", "[B,1]"), "steps": InputMap("n", "INT32", "[B,1]"),
                         "height": InputMap("h", "INT64", "[1]"), "seed": InputMap("s", "INT64", "[B]")},
                        ImageOutput("i"), constants=((InputMap("enc", "BYTES", "[1]"), "png"),))
    arrays = contract.arrays(job())
    assert arrays["n"].tolist() == [[4], [4]] and arrays["n"].dtype == np.int32
    assert arrays["h"].tolist() == [128] and arrays["h"].dtype == np.int64
    assert arrays["s"].tolist() == [1, 2] and arrays["enc"].tolist() == [b"png"]
    assert "w" not in arrays  # width is not mapped: the server fixes it


def test_bls_contract_sends_what_bls_inputs_sends():
    from flux_async.targets.bls_inputs import bls_arrays

    request = job()
    ours = BLS.arrays(request)
    theirs = bls_arrays(request.prompts, **request.bls_kwargs())
    assert ours.keys() == theirs.keys()
    for name in ours:
        assert ours[name].dtype == theirs[name].dtype and ours[name].tolist() == theirs[name].tolist()


# ---- decoding -----------------------------------------------------------------------------------------------------
IMAGES = np.random.default_rng(0).random((2, 3, 4, 5), dtype=np.float32)


@pytest.mark.parametrize("layout, value_range, array", [
    ("NCHW", "0..1", IMAGES),
    ("NHWC", "0..1", IMAGES.transpose(0, 2, 3, 1)),
    ("NCHW", "-1..1", IMAGES * 2 - 1),
    ("NHWC", "0..255", IMAGES.transpose(0, 2, 3, 1) * 255),
    ("CHW", "0..1", IMAGES[:1][0]),
    ("HWC", "0..255", IMAGES[0].transpose(1, 2, 0) * 255),
])
def test_tensors_of_every_layout_and_range_decode_to_the_same_images(layout, value_range, array):
    output = ImageOutput("x", "FP32", "tensor", layout, value_range)
    decoded = decode_images(output, array.astype(np.float32))
    expected = IMAGES if layout.startswith("N") else IMAGES[:1]
    np.testing.assert_allclose(decoded, expected, atol=1e-5)
    assert decoded.dtype == np.float32 and image_count(output, array.shape) == len(expected)


def test_uint8_nhwc_decodes_exactly():
    pixels = np.stack([to_uint8(image) for image in IMAGES])
    decoded = decode_images(ImageOutput("x", "UINT8", "tensor", "NHWC", "0..255"), pixels)
    assert np.array_equal(decoded, pixels.transpose(0, 3, 1, 2).astype(np.float32) / 255)


def test_png_bytes_and_base64_text_decode_to_the_pixels():
    files = [encode_png(image) for image in IMAGES]
    expected = np.stack([to_uint8(image).transpose(2, 0, 1) / 255 for image in IMAGES]).astype(np.float32)
    as_bytes = np.array(files, dtype=np.object_).reshape(2, 1)
    assert np.array_equal(decode_images(ImageOutput("x", "BYTES", "png"), as_bytes), expected)
    as_text = np.array([base64.b64encode(f) for f in files], dtype=np.object_)
    assert np.array_equal(decode_images(ImageOutput("x", "BYTES", "base64"), as_text), expected)
    one_file = np.frombuffer(files[0], dtype=np.uint8)
    assert np.array_equal(decode_images(ImageOutput("x", "UINT8", "png"), one_file), expected[:1])
    assert image_count(ImageOutput("x", "BYTES", "png"), [2, 1]) == 2


def test_undecodable_outputs_name_the_output_and_element():
    with pytest.raises(UndecodableImages, match=r"output GENERATED_IMAGE\[1\]: not a decodable PNG or JPEG"):
        decode_images(ImageOutput("GENERATED_IMAGE", "BYTES", "png"),
                      np.array([encode_png(IMAGES[0]), b"\x89PNG broken"], dtype=np.object_))
    with pytest.raises(UndecodableImages, match=r"output x\[0\]: .*base64|output x\[0\]"):
        decode_images(ImageOutput("x", "BYTES", "base64"), np.array([b"***"], dtype=np.object_))
    with pytest.raises(UndecodableImages, match=r"output img: 10 bytes for shape \[1, 2, 2, 3\] of UINT8, "
                                                r"expected 12"):
        tensor_from_raw(ImageOutput("img", "UINT8", "tensor", "NHWC"), b"0" * 10, [1, 2, 2, 3])
    with pytest.raises(UndecodableImages, match="layout NHWC needs 3 channels"):
        decode_images(ImageOutput("img", "UINT8", "tensor", "NHWC"), np.zeros((1, 2, 2, 4), dtype=np.uint8))


# ---- the check against the model, and inference ------------------------------------------------------------------
def tutorial_info() -> ModelInfo:
    return model_info(
        {"name": "text2image", "platform": "python",
         "inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [-1, 1]}],
         "outputs": [{"name": "generated_image", "datatype": "UINT8", "shape": [-1, -1, -1, 3]}]},
        {"max_batch_size": 4, "input": [{"name": "prompt", "data_type": "TYPE_STRING", "dims": ["1"]}],
         "parameters": {"seed": {"string_value": "0"}, "steps": {"string_value": "4"},
                        "height": {"string_value": "1024"}}})


def community_info(seed: bool = True) -> ModelInfo:
    inputs = [{"name": "PROMPT", "datatype": "BYTES", "shape": ["1"]}]
    config_inputs = [{"name": "PROMPT", "data_type": "TYPE_STRING", "dims": ["1"]}]
    if seed:
        inputs.append({"name": "SEED", "datatype": "INT64", "shape": ["1"]})
        config_inputs.append({"name": "SEED", "data_type": "TYPE_INT64", "dims": ["1"], "optional": True})
    return model_info({"name": "flux_png", "inputs": inputs,
                       "outputs": [{"name": "GENERATED_IMAGE", "datatype": "BYTES", "shape": ["1"]}]},
                      {"max_batch_size": 0, "input": config_inputs})


def bls_info(decoupled: bool = False) -> ModelInfo:
    from flux_async.contract import BLS_INPUTS, BLS_OUTPUTS

    def entries(specs):
        return [{"name": s.name, "datatype": s.datatype, "shape": list(s.dims)} for s in specs]

    return model_info({"name": "bls", "inputs": entries(BLS_INPUTS), "outputs": entries(BLS_OUTPUTS)},
                      {"max_batch_size": 0, "model_transaction_policy": {"decoupled": decoupled},
                       "input": [{"name": s.name, "optional": s.optional} for s in BLS_INPUTS]})


def test_the_bls_contract_fits_bls_and_only_on_its_protocols():
    assert check_contract(BLS, bls_info(), "grpc") == [] and check_contract(BLS, bls_info(), "http") == []
    assert check_contract(BLS, bls_info(decoupled=True), "grpc-stream") == []
    assert check_contract(BLS, bls_info(decoupled=True), "grpc") == [
        "model 'bls' is decoupled: use protocol grpc-stream, not grpc"]


def test_every_mismatching_tensor_is_named():
    contract = Contract({"prompt": InputMap("prompt", "BYTES", "[B]"), "seed": InputMap("seed", "INT32", "[B,1]"),
                         "steps": InputMap("num_steps", "INT32", "[1]")},
                        ImageOutput("image", "FP32", "tensor", "NCHW"), "used_seeds", 8)
    problems = check_contract(contract, tutorial_info(), "grpc")
    assert problems == [
        "input 'prompt' (field prompt): shape [B] does not fit the model's [-1, 1] (max_batch_size 4)",
        "input 'seed' (field seed): model 'text2image' has no such input; its inputs: prompt",
        "input 'num_steps' (field steps): model 'text2image' has no such input; its inputs: prompt",
        "output 'image' (images): model 'text2image' has no such output; its outputs: generated_image",
        "output 'used_seeds' (seeds): model 'text2image' has no such output",
        "max_prompts 8 is over the model's max_batch_size 4"]


def test_a_required_input_the_contract_leaves_out_is_named():
    contract = Contract({"seed": InputMap("SEED", "INT64", "[1]")}, ImageOutput("GENERATED_IMAGE", "BYTES", "png"),
                        max_prompts=1)
    assert check_contract(contract, community_info(), "http") == [
        "input 'PROMPT': the model requires it but the contract sends nothing for it (map a field to it, or add it "
        "to target.contract.constants)"]


def test_inference_reads_the_tutorial_shape():
    inference = infer_contract(tutorial_info())
    contract = inference.contract
    assert contract.inputs == {"prompt": InputMap("prompt", "BYTES", "[B,1]")}
    assert contract.images == ImageOutput("generated_image", "UINT8", "tensor", "NHWC", "0..255")
    assert contract.max_prompts == 4 and contract.deterministic and contract.unverifiable is None
    assert inference.server_fixed == {"seed": "seed", "steps": "steps", "height": "height"}
    assert check_contract(contract, tutorial_info(), "grpc") == []


def test_inference_reads_the_community_png_shape_and_whether_it_can_be_verified():
    contract = infer_contract(community_info()).contract
    assert contract.inputs == {"prompt": InputMap("PROMPT", "BYTES", "[1]"), "seed": InputMap("SEED", "INT64", "[1]")}
    assert contract.images == ImageOutput("GENERATED_IMAGE", "BYTES", "png") and contract.max_prompts == 1
    assert contract.unverifiable is None
    unseeded = infer_contract(community_info(seed=False)).contract
    assert "takes no seed and returns none" in unseeded.unverifiable


def test_inference_reads_bls_as_the_bls_contract():
    inference = infer_contract(bls_info())
    assert inference.contract.inputs == BLS.inputs and inference.contract.seeds == "seeds"
    assert inference.contract.images.name == "images" and not inference.range_known  # FP32: 0..1 is a guess


def test_a_model_without_prompt_or_images_is_not_text_to_image():
    info = model_info({"name": "noop", "inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [-1, -1]}],
                       "outputs": [{"name": "OUTPUT", "datatype": "FP32", "shape": [-1, -1]}]},
                      {"max_batch_size": 8})
    inference = infer_contract(info)
    assert not inference.text_to_image
    assert inference.reason.startswith("model 'noop' does not look like text-to-image: no BYTES input that "
                                       "carries a prompt")


def test_value_ranges_from_a_probe_image():
    assert value_range(0.0, 0.98) == "0..1" and value_range(-0.9, 0.9) == "-1..1" and value_range(0, 254) == "0..255"


def test_config_datatypes_are_named_as_kserve_names_them():
    assert kserve_datatype("TYPE_STRING") == "BYTES" and kserve_datatype("TYPE_FP16") == "FP16"


def test_the_readmes_contract_examples_parse():
    """The YAML blocks of README's "Any Triton text-to-image model" are valid contracts, each a different shape."""
    import re
    from pathlib import Path

    from flux_async.scenario.config import parse_scenario

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("### Any Triton text-to-image model"):readme.index("### OpenAI Images and NIM")]
    contracts = []
    for block in re.findall(r"```yaml\n(.*?)```", section, re.S):
        data = yaml.safe_load(block)
        target = data["target"] if "target" in data else {"url": "grpc://triton:8001", "model": "m", **data}
        scenario = parse_scenario({"target": target, "workload": {"prompts": ["a"]},
                                   "phases": [{"executor": "constant-concurrency", "concurrency": 1, "requests": 1}]})
        contracts.append(scenario.target.contract)
    assert [(c.images.datatype, c.images.format) for c in contracts] == [("UINT8", "tensor"), ("BYTES", "png"),
                                                                          ("BYTES", "png")]
    assert contracts[0].deterministic and contracts[2].constants
