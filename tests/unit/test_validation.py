"""`bls` input validation and defaults (docs/bls.md), without a server."""

from __future__ import annotations

import numpy as np
import pytest

from flux_async import contract
from flux_async.pipeline.validation import InvalidInput, parse_bls_inputs


def parse(variant="schnell", tokens=lambda p: len(p.split()) + 1, requested_outputs=(), **inputs):
    inputs.setdefault("prompt", np.array([b"a cat"], dtype=np.object_))
    return parse_bls_inputs(inputs, variant, tokens, requested_outputs=requested_outputs)


@pytest.mark.parametrize("variant, guidance, length", [("schnell", 0.0, 256), ("dev", 3.5, 512)])
def test_defaults_follow_the_variant(variant, guidance, length):
    request = parse(variant)
    assert (request.num_inference_steps, request.height, request.width) == (4, 1024, 1024)
    assert request.guidance_scale == guidance and request.max_sequence_length == length


def test_missing_seeds_are_drawn_per_prompt_and_in_range():
    request = parse(prompt=np.array([b"a", b"b", b"c"], dtype=np.object_))
    assert len(request.seeds) == 3 and all(0 <= s <= contract.MAX_SEED for s in request.seeds)
    assert len(set(request.seeds)) == 3


def test_limits_are_inclusive():
    request = parse(num_inference_steps=np.array([100], np.int32), height=np.array([2048], np.int32),
                    width=np.array([64], np.int32), guidance_scale=np.array([30.0], np.float32),
                    max_sequence_length=np.array([512], np.int32), seed=np.array([contract.MAX_SEED], np.int64))
    assert (request.num_inference_steps, request.height, request.width) == (100, 2048, 64)


def test_token_count_equal_to_the_limit_is_accepted_and_one_more_is_not():
    assert parse(tokens=lambda p: 8, max_sequence_length=np.array([8], np.int32)).max_sequence_length == 8
    with pytest.raises(InvalidInput, match=r"prompt\[0\] is 9 T5 tokens long but max_sequence_length is 8") as e:
        parse(tokens=lambda p: 9, max_sequence_length=np.array([8], np.int32))
    assert e.value.field == "prompt"


def test_unicode_prompts_are_text():
    request = parse(prompt=np.array(["고양이 한 마리".encode(), "café".encode()], dtype=np.object_))
    assert request.prompts == ("고양이 한 마리", "café")


def test_wrong_dtype_names_field_and_type():
    with pytest.raises(InvalidInput, match="height must be INT32, got float32"):
        parse(height=np.array([128.0], np.float32))


def encoding(value) -> np.ndarray:
    return np.array([value], dtype=np.object_)


def test_image_encoding_defaults_to_fp32_and_takes_each_value():
    assert parse().image_encoding == "fp32"
    for name in contract.IMAGE_ENCODINGS:
        assert parse(image_encoding=encoding(name.encode())).image_encoding == name


@pytest.mark.parametrize("value, shown", [(b"jpeg", "'jpeg'"), (b"PNG", "'PNG'"), (b"", "''"), (b"\xff", "'\ufffd'")])
def test_unknown_image_encoding_names_the_input_and_the_values(value, shown):
    with pytest.raises(InvalidInput) as e:
        parse(image_encoding=encoding(value))
    assert str(e.value) == f"image_encoding must be one of fp32, uint8, png, got {shown}"
    assert e.value.field == "image_encoding"


@pytest.mark.parametrize("value, message", [
    (np.array([1], np.int32), "image_encoding must be BYTES, got int32"),
    (np.array([b"png", b"png"], dtype=np.object_), r"image_encoding must hold exactly 1 value, got shape \[2\]"),
])
def test_image_encoding_of_the_wrong_type_or_shape_is_rejected(value, message):
    with pytest.raises(InvalidInput, match=message):
        parse(image_encoding=value)


def test_a_named_image_output_must_be_the_encodings_own():
    assert parse(image_encoding=encoding(b"png"), requested_outputs={"images_png", "seeds"}).image_encoding == "png"
    assert parse(image_encoding=encoding(b"uint8"), requested_outputs={"seeds"}).image_encoding == "uint8"
    assert parse(requested_outputs={"images"}).image_encoding == "fp32"
    with pytest.raises(InvalidInput) as e:
        parse(image_encoding=encoding(b"png"), requested_outputs={"images", "seeds"})
    assert str(e.value) == "image_encoding is 'png', which returns images_png, but the request asks for output images"
    assert e.value.field == "image_encoding"
    with pytest.raises(InvalidInput, match="image_encoding is 'fp32', which returns images, .* output images_uint8"):
        parse(requested_outputs={"images_uint8"})
